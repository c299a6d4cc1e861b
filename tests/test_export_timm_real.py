"""Real timm opens keras-mixer's timm export (-m timm; needs PyTorch and timm).

PyTorch is not a dependency of keras-mixer, so timm runs in a child process of
another Python: KERAS_MIXER_TIMM_PYTHON names it (default: this one), e.g.

    python -m venv /work/timm-venv && /work/timm-venv/bin/pip install torch timm
    KERAS_MIXER_TIMM_PYTHON=/work/timm-venv/bin/python python -m pytest -m timm -s \
        tests/test_export_timm_real.py

The child opens the exported directory three ways: by name,
`timm.create_model(arch, pretrained=True, num_classes=N, **model_args,
pretrained_cfg_overlay=dict(pretrained_cfg, file=DIR/model.safetensors))` (without
the config's pretrained_cfg timm normalizes with the architecture's default mean/std,
0.5: right for the authors' weights, wrong for MIIL's); through `local-dir:DIR`
(config.json's model_args, num_classes and pretrained_cfg); and into a fresh model
with `load_state_dict(strict=True)`. It feeds the images the Keras model saw (at its
input size), normalized with the config's mean/std, and returns the logits. A model
with tanh GELU is also run with act_layer=partial(nn.GELU, approximate="tanh"): that
one must match Keras; timm's default exact GELU is reported (-s prints the numbers).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_mixer
import timm_reference
from test_export_timm import GOOGLE, MIIL, S32, narrow_mixer, randomize
from keras_mixer.export import timm_format

pytestmark = pytest.mark.timm
TIMM_PYTHON = os.environ.get("KERAS_MIXER_TIMM_PYTHON", sys.executable)
RELATIVE = 1e-4  # max |keras - timm| / max |timm| on the logits

CHILD = textwrap.dedent("""
    import functools, json, sys
    import numpy as np, safetensors.torch, timm, torch
    repo, images, out = sys.argv[1:4]
    config = json.load(open(repo + "/config.json"))
    x = torch.from_numpy(np.load(images)).permute(0, 3, 1, 2) / 255.0  # RGB 0-255 -> [0, 1]

    def logits(model, data=None):
        model.eval()
        data = data or timm.data.resolve_data_config({}, model=model)
        mean = torch.tensor(data["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(data["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            return model((x - mean) / std).numpy(), data

    file = repo + "/model.safetensors"
    args = config.get("model_args", {})
    results, report = {}, {"timm": timm.__version__, "torch": torch.__version__}
    # By name, the file and its pretrained_cfg overlaid on the architecture's defaults.
    overlay = timm.create_model(config["architecture"], pretrained=True,
                                num_classes=config["num_classes"],
                                pretrained_cfg_overlay=dict(config["pretrained_cfg"], file=file),
                                **args)
    results["overlay"], _ = logits(overlay)
    local = timm.create_model("local-dir:" + repo, pretrained=True)
    results["local_dir"], data = logits(local)
    report["data_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    fresh = timm.create_model(config["architecture"], num_classes=config["num_classes"], **args)
    fresh.load_state_dict(safetensors.torch.load_file(file), strict=True)
    results["strict"], _ = logits(fresh, config["pretrained_cfg"])  # the config's mean/std
    tanh = functools.partial(torch.nn.GELU, approximate="tanh")
    results["tanh"], _ = logits(timm.create_model("local-dir:" + repo, pretrained=True,
                                                  act_layer=tanh))
    report["act"] = type(local.blocks[0].mlp_tokens.act).__name__
    report["norm_eps"] = local.blocks[0].norm1.eps
    np.savez(out, **results)
    print(json.dumps(report))
""")


def _timm_available():
    done = subprocess.run([TIMM_PYTHON, "-c", "import timm, torch, safetensors"],
                          capture_output=True, text=True, timeout=300)
    return done.returncode == 0


@pytest.fixture(scope="module")
def timm_python():
    if not _timm_available():
        pytest.skip(f"timm and torch are not importable by {TIMM_PYTHON}: set "
                    "KERAS_MIXER_TIMM_PYTHON to a Python with torch and timm")
    return TIMM_PYTHON


def run_timm(python, repo, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([python, "-c", CHILD, str(repo), str(tmp_path / "x.npy"),
                           str(tmp_path / "timm.npz")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(tmp_path / "timm.npz", allow_pickle=False) as f:
        outputs = {k: f[k] for k in f.files}
    return outputs, json.loads(done.stdout.strip().splitlines()[-1])


def relative(keras_logits, timm_logits):
    return float(np.max(np.abs(keras_logits - timm_logits)) / np.max(np.abs(timm_logits)))


def check(model, repo, python, tmp_path, name, n=4):
    size = tuple(model.input_shape[1:3])
    x = np.random.default_rng(7).uniform(0, 255, (n, *size, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    outputs, report = run_timm(python, repo, x, tmp_path)
    gelu = model.get_layer("MixerBlock_0").gelu_form
    assert report["act"] == "GELU" and report["norm_eps"] == 1e-6
    config = json.loads((repo / "config.json").read_text())["pretrained_cfg"]
    data = report["data_config"]
    assert data["input_size"] == [3, *size] and data["crop_pct"] == config["crop_pct"]
    assert (data["mean"], data["std"], data["interpolation"]) == (
        config["mean"], config["std"], config["interpolation"])
    same = "tanh" if gelu == "tanh" else "local_dir"  # timm run with the model's own GELU
    errors = {k: relative(expected, v) for k, v in outputs.items()}
    agreement = float(np.mean(expected.argmax(-1) == outputs["local_dir"].argmax(-1)))
    print(f"\n{name}: gelu {gelu}; relative logit error vs timm {report['timm']} "
          f"(torch {report['torch']}): " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
          + f"; max abs, timm's exact GELU: "
            f"{np.max(np.abs(expected - outputs['local_dir'])):.3g}, top-1 agreement {agreement}")
    for key in ("overlay", "local_dir", "strict"):  # one file, three ways of opening it
        np.testing.assert_array_equal(outputs[key], outputs["local_dir"])
    assert errors[same] <= RELATIVE, errors


@pytest.mark.parametrize("gelu_form", ["tanh", "erf"])
def test_narrow_s32_opens_in_timm_with_the_keras_logits(tmp_path, timm_python, gelu_form):
    model = narrow_mixer(classifier_activation=None, gelu_form=gelu_form)
    timm_format.export_timm(model, tmp_path / "repo")
    check(model, tmp_path / "repo", timm_python, tmp_path, f"narrow S/32 64px {gelu_form}")


@pytest.mark.parametrize("kind", [GOOGLE, MIIL], ids=["google", "miil"])
def test_s32_at_1000_classes_opens_in_timm(tmp_path, timm_python, kind):
    sd = timm_reference.random_state_dict(np.random.default_rng(0), classes=1000, **S32)
    repo = timm_reference.write_repo(tmp_path / "repo", sd, classes=1000, **kind)
    model = keras_mixer.MixerS32(weights=str(repo), classifier_activation=None)
    timm_format.export_timm(model, tmp_path / "out")
    check(model, tmp_path / "out", timm_python, tmp_path, f"S/32 1000 classes {kind['tag']}")


def test_tiled_s32_opens_in_timm_through_model_args(tmp_path, timm_python):
    sd = timm_reference.random_state_dict(np.random.default_rng(0), classes=10, **S32)
    repo = timm_reference.write_repo(tmp_path / "repo", sd, classes=10, **GOOGLE)
    model = keras_mixer.MixerS32(weights=str(repo), input_shape=(448, 224, 3),
                                 classifier_activation=None)
    timm_format.export_timm(model, tmp_path / "out")
    check(model, tmp_path / "out", timm_python, tmp_path, "S/32 tiled 448x224", n=2)


def test_b16_shape_at_1000_classes_opens_in_timm(tmp_path, timm_python):
    model = randomize(keras_mixer.MixerB16(classifier_activation=None))
    timm_format.export_timm(model, tmp_path / "out")
    check(model, tmp_path / "out", timm_python, tmp_path, "B/16 1000 classes, random", n=2)

