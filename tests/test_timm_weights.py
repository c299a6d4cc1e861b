"""timm's Hugging Face checkpoints: a local repository directory and hf:// from a cache.

Synthetic B/16 repositories in timm's exact layout (random values), one like
MIIL's (PyTorch-trained: exact GELU, mean 0 / std 1 on [0, 1], bilinear) and
one like timm's copy of the authors' file (tanh GELU, [-1, 1]); logits are
compared with timm_reference.py, a NumPy transcription of timm's MlpMixer.
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
from helpers import key_parts
from keras_mixer import weights as weights_lib

B16 = dict(blocks=12, patch=16, hidden=768, d_s=384, d_c=3072, tokens=196)
MIIL = dict(architecture="mixer_b16_224", tag="miil_in21k_ft_in1k", mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0), interpolation="bilinear")
GOOGLE = dict(architecture="mixer_b16_224", tag="goog_in21k_ft_in1k", mean=(0.5, 0.5, 0.5),
              std=(0.5, 0.5, 0.5), interpolation="bicubic")


@pytest.fixture(scope="module")
def b16_state_dict():
    return timm_reference.random_state_dict(np.random.default_rng(0), classes=1000, **B16)


def _images(n=2):
    return np.random.default_rng(1).uniform(0, 255, (n, 224, 224, 3)).astype(np.float32)


@pytest.mark.parametrize("kind, gelu", [(MIIL, "erf"), (GOOGLE, "tanh")], ids=["miil", "google"])
def test_repo_directory_gives_timm_logits(tmp_path, b16_state_dict, kind, gelu):
    repo = timm_reference.write_repo(tmp_path / "repo", b16_state_dict, classes=1000, **kind)
    model = keras_mixer.MixerB16(weights=str(repo), classifier_activation=None)
    x = _images()
    expected = timm_reference.logits(x, b16_state_dict, mean=kind["mean"], std=kind["std"],
                                     gelu_form=gelu)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    assert model.get_layer("MixerBlock_0").gelu_form == gelu
    rescaling = model.get_layer("rescaling")
    assert (rescaling.interpolation, rescaling.crop_fraction) == (kind["interpolation"], 0.875)
    # The other GELU form misses the tolerance by more than 2x: the choice matters.
    other = timm_reference.logits(x, b16_state_dict, mean=kind["mean"], std=kind["std"],
                                  gelu_form="tanh" if gelu == "erf" else "erf")
    assert np.max(np.abs(other - expected)) > 2e-4


def test_repo_missing_a_tensor_is_refused_by_name(tmp_path, b16_state_dict):
    sd = {k: v for k, v in b16_state_dict.items() if k != "blocks.3.mlp_tokens.fc2.bias"}
    repo = timm_reference.write_repo(tmp_path / "repo", sd, classes=1000, **MIIL)
    # Named in the file's own naming (timm's) and in ours.
    with pytest.raises(ValueError, match=key_parts(
            "weights:", "nothing was loaded: 1 missing", "'blocks.3.mlp_tokens.fc2.bias'",
            "'MixerBlock_3/token_mixing/Dense_1/bias'")):
        keras_mixer.MixerB16(weights=str(repo))


def test_repo_of_another_variant_or_size_is_refused(tmp_path):
    sd = timm_reference.random_state_dict(np.random.default_rng(0), blocks=2, patch=32,
                                          hidden=16, d_s=8, d_c=32, tokens=49, classes=5)
    repo = timm_reference.write_repo(tmp_path / "s32", sd, classes=5, **dict(
        MIIL, architecture="mixer_s32_224"))
    with pytest.raises(ValueError, match=r"weights: .*s32' holds a Mixer S/32; got variant 'B/16'"):
        keras_mixer.MixerB16(weights=str(repo))
    with pytest.raises(ValueError, match=r"mis-shaped, first 'stem.proj.weight' \('stem/kernel'\): "
                                         r"checkpoint \(32, 32, 3, 16\)"):
        keras_mixer.MixerS32(weights=str(repo))  # right name, wrong sizes
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"weights: directory .*empty' lacks \['config.json'"):
        keras_mixer.MixerB16(weights=str(tmp_path / "empty"))


HF_LOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras_mixer
    x = np.load(sys.argv[1])
    for weights in sys.argv[2:]:  # one process: TensorFlow starts once
        model = keras_mixer.MixerB16(weights=weights, classifier_activation=None)
        print(json.dumps(model.predict(x, verbose=0).tolist()))
""")


def _hf_cache(root, repo_id, snapshot_of):
    """A Hugging Face hub cache holding `repo_id` at one commit, as huggingface_hub lays it out."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        os.link(snapshot_of / name, snapshot / name)


def test_hf_tag_loads_from_a_local_cache_offline(tmp_path, b16_state_dict):
    pytest.importorskip("huggingface_hub")
    repo = timm_reference.write_repo(tmp_path / "repo", b16_state_dict, classes=1000, **MIIL)
    _hf_cache(tmp_path / "hf", "timm/mixer_b16_224.miil_in21k_ft_in1k", repo)
    x = _images(1)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    sources = ("imagenet_miil", "hf://timm/mixer_b16_224.miil_in21k_ft_in1k")
    done = subprocess.run([sys.executable, "-c", HF_LOAD, str(tmp_path / "x.npy"), *sources],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = timm_reference.logits(x, b16_state_dict, mean=MIIL["mean"], std=MIIL["std"],
                                     gelu_form="erf")
    outputs = [line for line in done.stdout.splitlines() if line.startswith("[[")]
    assert len(outputs) == len(sources)
    for line in outputs:
        np.testing.assert_allclose(np.asarray(json.loads(line)), expected, atol=1e-4)


def test_hf_offline_without_cache_says_what_to_place_where(tmp_path):
    pytest.importorskip("huggingface_hub")
    code = "import keras_mixer; keras_mixer.MixerB16(weights='hf://timm/mixer_b16_224.miil_in21k')"
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "could not get config.json of hf://timm/mixer_b16_224.miil_in21k" in done.stderr
    assert "model.safetensors" in done.stderr and "HF_HOME" in done.stderr


def test_every_public_checkpoint_is_in_the_table():
    files = {where for tag in weights_lib.CHECKPOINTS.values() for where in tag["files"].values()}
    bucket = {f for f in files if not f.startswith("hf://")}
    hub = {f for f in files if f.startswith("hf://")} | {
        "hf://" + r for r in weights_lib.HF_COPIES.values()}
    assert len(bucket) == 11 and len(hub) == 6  # the authors' 11 files, timm's 6 repos
    assert weights_lib.available_tags("S/8") == ["imagenet", "imagenet_gsam"]
