"""Export to timm's format: config.json + model.safetensors, as timm publishes them.

Checked against the `safetensors` library (its bytes and its reader), an independent
key-by-key mapping written here from the Keras layers, timm_reference.py (a NumPy
transcription of timm's MlpMixer forward), and the round trip timm repository ->
keras-mixer -> timm repository (every tensor's bytes, the config's fields). Real
timm in PyTorch runs in tests/test_export_timm_real.py (-m timm).
"""

import json
import os

import numpy as np
import pytest

import keras_mixer
import timm_reference
from helpers import TINY, key_parts, tiny_mixer
from keras_mixer import cli
from keras_mixer.export import timm_format
from keras_mixer.weights import checkpoint

safetensors_numpy = pytest.importorskip("safetensors.numpy")

# timm's mixer_s32_224 (blocks, patch and width fixed by the name) with narrow MLPs
# at 64x64 (4 tokens): timm builds it from model_args; 7 MB, built in a second.
NARROW = dict(num_blocks=8, patch_size=32, hidden_dim=512, tokens_mlp_dim=16, channels_mlp_dim=32)
S32 = dict(blocks=8, patch=32, hidden=512, d_s=256, d_c=2048, tokens=49)
GOOGLE = dict(architecture="mixer_s32_224", tag="goog_in21k_ft_in1k", mean=(0.5, 0.5, 0.5),
              std=(0.5, 0.5, 0.5), interpolation="bicubic")
MIIL = dict(architecture="mixer_s32_224", tag="miil_in21k_ft_in1k", mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0), interpolation="bilinear", crop_pct=0.95)


def randomize(model, seed=0):
    """Random weights everywhere (a fresh Mixer's head is zero: every logit equal)."""
    rng = np.random.default_rng(seed)
    for key, variable in checkpoint.checkpoint_variables(model).items():
        shape = tuple(variable.shape)
        if key.endswith("kernel"):
            value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        elif key.endswith("scale"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            value = 0.1 * rng.standard_normal(shape)
        variable.assign(value.astype(np.float32))
    return model


def narrow_mixer(**kwargs):
    kwargs.setdefault("classes", 5)
    return randomize(keras_mixer.Mixer(NARROW, input_shape=(64, 64, 3), **kwargs))


def expected_state_dict(model):
    """timm's keys and PyTorch layouts, mapped here from the Keras layers one by one."""
    sd = {}
    stem = model.get_layer("stem")
    sd["stem.proj.weight"] = np.asarray(stem.kernel).transpose(3, 2, 0, 1)  # HWIO -> OIHW
    sd["stem.proj.bias"] = np.asarray(stem.bias)
    blocks = [layer for layer in model.layers if layer.name.startswith("MixerBlock_")]
    for i, layer in enumerate(blocks):
        b = f"blocks.{i}"
        for norm, ln in (("norm1", layer.layer_norm_0), ("norm2", layer.layer_norm_1)):
            sd[f"{b}.{norm}.weight"], sd[f"{b}.{norm}.bias"] = np.asarray(ln.gamma), np.asarray(ln.beta)
        for mlp, block in (("mlp_tokens", layer.token_mixing), ("mlp_channels", layer.channel_mixing)):
            for fc, dense in (("fc1", block.dense_0), ("fc2", block.dense_1)):
                sd[f"{b}.{mlp}.{fc}.weight"] = np.asarray(dense.kernel).T  # Linear: (out, in)
                sd[f"{b}.{mlp}.{fc}.bias"] = np.asarray(dense.bias)
    norm, head = model.get_layer("pre_head_layer_norm"), model.get_layer("head")
    sd["norm.weight"], sd["norm.bias"] = np.asarray(norm.gamma), np.asarray(norm.beta)
    sd["head.weight"], sd["head.bias"] = np.asarray(head.kernel).T, np.asarray(head.bias)
    return sd


def read_config(directory):
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def narrow():
    return narrow_mixer(classifier_activation=None)


# --- the safetensors file ----------------------------------------------------


def test_safetensors_writer_matches_the_library_byte_for_byte(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"head.weight": rng.standard_normal((5, 3)).astype(np.float32),
               "blocks.10.norm1.bias": rng.standard_normal(7).astype(np.float32),
               "blocks.2.norm1.bias": np.zeros((2, 1, 3), np.float32),
               "a": np.ones(1, np.float32), "stem.proj.weight": np.ones((0, 4), np.float32)}
    timm_format.write_safetensors(tmp_path / "ours.safetensors", tensors)
    safetensors_numpy.save_file(tensors, str(tmp_path / "library.safetensors"))
    assert (tmp_path / "ours.safetensors").read_bytes() == \
        (tmp_path / "library.safetensors").read_bytes()
    back = safetensors_numpy.load_file(str(tmp_path / "ours.safetensors"))
    assert sorted(back) == sorted(tensors)
    for key, array in tensors.items():
        assert back[key].dtype == np.float32 and back[key].shape == array.shape
        np.testing.assert_array_equal(back[key], array)


def test_export_writes_timms_keys_layouts_and_config(tmp_path, narrow):
    report = timm_format.export_timm(narrow, tmp_path / "repo")
    assert sorted(os.listdir(tmp_path / "repo")) == ["config.json", "model.safetensors"]
    sd = safetensors_numpy.load_file(str(tmp_path / "repo" / "model.safetensors"))
    expected = expected_state_dict(narrow)
    assert sorted(sd) == sorted(expected) and len(sd) == 4 + 8 * 12 + 2 == report["tensors"]
    for key, array in expected.items():
        assert sd[key].dtype == np.float32 and sd[key].shape == array.shape, key
        np.testing.assert_array_equal(sd[key], array, err_msg=key)
    # PyTorch's layouts, as timm's modules hold them.
    assert sd["stem.proj.weight"].shape == (512, 3, 32, 32)  # Conv2d (out, in, kh, kw)
    assert sd["blocks.0.mlp_tokens.fc1.weight"].shape == (16, 4)  # Linear (out, in): 4 tokens
    assert sd["blocks.7.mlp_channels.fc2.weight"].shape == (512, 32)
    assert sd["head.weight"].shape == (5, 512)
    config = read_config(tmp_path / "repo")
    assert config == {
        "architecture": "mixer_s32_224", "num_classes": 5, "num_features": 512,
        "global_pool": "avg", "model_args": {"img_size": 64, "mlp_ratio": [16 / 512, 32 / 512]},
        "pretrained_cfg": {
            "custom_load": False, "input_size": [3, 64, 64], "fixed_input_size": True,
            "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 5,
            "pool_size": None, "first_conv": "stem.proj", "classifier": "head",
            "notes": [timm_format.TANH_NOTE]},
        "keras_mixer": {"gelu_form": "tanh"}}
    assert report["architecture"] == "mixer_s32_224" and report["gelu_form"] == "tanh"
    from keras_mixer.export import export_timm

    assert export_timm is timm_format.export_timm


@pytest.mark.parametrize("gelu_form", ["tanh", "erf"])
def test_timms_forward_on_the_export_gives_the_keras_logits(tmp_path, gelu_form):
    model = narrow_mixer(classifier_activation=None, gelu_form=gelu_form)
    timm_format.export_timm(model, tmp_path / "repo")
    config = read_config(tmp_path / "repo")
    sd = safetensors_numpy.load_file(str(tmp_path / "repo" / "model.safetensors"))
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    cfg = config["pretrained_cfg"]
    expected = timm_reference.logits(x, sd, mean=cfg["mean"], std=cfg["std"],
                                     gelu_form=config["keras_mixer"]["gelu_form"])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    assert config["keras_mixer"]["gelu_form"] == gelu_form
    assert ("notes" in cfg) == (gelu_form == "tanh")


def test_sigmoid_gelu_is_written_as_tanh_and_normalization_per_channel(tmp_path):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = keras_mixer.Mixer(NARROW, input_shape=(64, 96, 3), classes=3, gelu_form="sigmoid")
    model.get_layer("rescaling").scale = [1 / (255 * s) for s in std]
    model.get_layer("rescaling").offset = [-m / s for m, s in zip(mean, std)]
    timm_format.export_timm(model, tmp_path / "repo")
    config = read_config(tmp_path / "repo")
    assert config["keras_mixer"] == {"gelu_form": "tanh"}
    cfg = config["pretrained_cfg"]
    assert (cfg["mean"], cfg["std"]) == (list(mean), list(std))  # as a config states them
    assert cfg["input_size"] == [3, 64, 96] and config["model_args"]["img_size"] == [64, 96]


# --- round trip: a timm repository -> keras-mixer -> a timm repository ----------


@pytest.fixture(scope="module")
def s32_state_dict():
    return timm_reference.random_state_dict(np.random.default_rng(0), classes=5, **S32)


@pytest.mark.parametrize("kind, gelu", [(GOOGLE, "tanh"), (MIIL, "erf")], ids=["google", "miil"])
def test_round_trip_gives_the_same_tensors_and_config(tmp_path, s32_state_dict, kind, gelu):
    names = ["cat", "dog", "emu", "gnu", "yak"] if kind is MIIL else None
    repo = timm_reference.write_repo(tmp_path / "repo", s32_state_dict, classes=5,
                                     label_names=names, **kind)
    out = tmp_path / "out"
    report = timm_format.export_timm("S/32", out, weights=str(repo))  # label_names from the repo
    assert report["gelu_form"] == gelu
    original = safetensors_numpy.load_file(str(repo / "model.safetensors"))
    exported = safetensors_numpy.load_file(str(out / "model.safetensors"))
    assert sorted(exported) == sorted(original)
    for key, array in original.items():
        assert (exported[key].dtype, exported[key].shape) == (array.dtype, array.shape), key
        assert exported[key].tobytes() == array.tobytes(), key
    before, after = read_config(repo), read_config(out)
    for field in ("architecture", "num_classes", "global_pool"):
        assert after[field] == before[field], field
    assert after["num_features"] == 512 and after.get("label_names") == names
    assert "model_args" not in after  # S/32 at 224 as timm registers it
    for field in ("mean", "std", "crop_pct", "interpolation", "input_size", "num_classes",
                  "fixed_input_size", "crop_mode", "first_conv", "classifier"):
        assert after["pretrained_cfg"][field] == before["pretrained_cfg"][field], field
    # keras-mixer reads its own export back: same GELU form, preprocessing and function.
    x = np.random.default_rng(2).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    first = keras_mixer.MixerS32(weights=str(repo), classifier_activation=None)
    again = keras_mixer.MixerS32(weights=str(out), classifier_activation=None)
    assert again.get_layer("MixerBlock_0").gelu_form == gelu
    assert again.get_layer("rescaling").get_config() == first.get_layer("rescaling").get_config()
    np.testing.assert_array_equal(again.predict(x, verbose=0), first.predict(x, verbose=0))


def test_tiled_high_resolution_model_goes_through_model_args(tmp_path, s32_state_dict):
    repo = timm_reference.write_repo(tmp_path / "repo", s32_state_dict, classes=5, **GOOGLE)
    # Paper Appendix C: 448 x 224 is 2 x 1 tiles of the 224 model, a token MLP twice as wide.
    model = keras_mixer.MixerS32(weights=str(repo), input_shape=(448, 224, 3),
                                 classifier_activation=None)
    report = timm_format.export_timm(model, tmp_path / "out")
    assert report["model_args"] == {"img_size": [448, 224], "mlp_ratio": [1.0, 4.0]}
    config = read_config(tmp_path / "out")
    assert config["pretrained_cfg"]["input_size"] == [3, 448, 224]
    sd = safetensors_numpy.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert sd["blocks.0.mlp_tokens.fc1.weight"].shape == (512, 98)  # int(1.0 * 512), 14 x 7
    x = np.random.default_rng(3).uniform(0, 255, (2, 448, 224, 3)).astype(np.float32)
    expected = timm_reference.logits(x, sd, mean=GOOGLE["mean"], std=GOOGLE["std"],
                                     gelu_form="tanh")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    again = keras_mixer.MixerS32(weights=str(tmp_path / "out"), classifier_activation=None)
    assert again.input_shape == (None, 448, 224, 3)
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, atol=1e-4)


# --- what timm cannot state, and bad arguments: refused before any work -----------


def test_what_timm_cannot_state_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=key_parts(
            "model:", "timm has no Mixer of 2 blocks, patch 4, width 16",
            "mixer_s32_224 (8, 32, 512)", "mixer_l16_224 (24, 16, 1024)")):
        timm_format.export_timm(tiny_mixer(classes=3), tmp_path / "a")
    headless = keras_mixer.Mixer(NARROW, input_shape=(64, 64, 3), include_top=False,
                                 pooling="avg")
    with pytest.raises(ValueError, match=key_parts("model:", "'head'", "include_top=True")):
        timm_format.export_timm(headless, tmp_path / "b")
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


@pytest.mark.parametrize("kwargs, error, parts", [
    (dict(output=""), ValueError, ("output:", "''")),
    (dict(output=3), ValueError, ("output:", "3")),
    (dict(overwrite="yes"), ValueError, ("overwrite:", "'yes'")),
    (dict(labels=5), ValueError, ("labels:", "got 5")),
    (dict(model="Z/9"), ValueError, ("model:", "'Z/9'")),
    (dict(weights="nope"), ValueError, ("weights:", "'nope'")),
], ids=["empty-output", "int-output", "overwrite", "labels", "model", "weights"])
def test_bad_arguments_are_refused_naming_them(tmp_path, kwargs, error, parts):
    args = dict(model="S/32", output=str(tmp_path / "out"), weights=None) | kwargs
    with pytest.raises(error, match=key_parts(*parts)):
        timm_format.export_timm(args.pop("model"), args.pop("output"), **args)
    assert not os.path.exists(tmp_path / "out")


def test_label_count_must_match_the_head(tmp_path, narrow):
    with pytest.raises(ValueError, match=key_parts("labels:", "5 classes", "got 2 labels")):
        timm_format.export_timm(narrow, tmp_path / "out", labels=["a", "b"])
    timm_format.export_timm(narrow, tmp_path / "out", labels=["a", "b", "c", "d", "e"])
    assert read_config(tmp_path / "out")["label_names"] == ["a", "b", "c", "d", "e"]


def test_existing_output_is_refused_unless_overwrite(tmp_path, narrow):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match=key_parts("output:", "file'", "not a directory")):
        timm_format.export_timm(narrow, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    timm_format.export_timm(narrow, tmp_path / "empty")  # an empty directory is fine
    with pytest.raises(FileExistsError, match=key_parts("output:", "empty'", "non-empty",
                                                        "--overwrite")):
        timm_format.export_timm(narrow, tmp_path / "empty")
    (tmp_path / "empty" / "README.md").write_text("mine")
    timm_format.export_timm(narrow, tmp_path / "empty", overwrite=True)
    assert sorted(os.listdir(tmp_path / "empty")) == ["README.md", "config.json",
                                                      "model.safetensors"]


def test_a_failed_write_leaves_the_previous_files_and_no_temporary(tmp_path, narrow,
                                                                   monkeypatch):
    out = tmp_path / "repo"
    timm_format.export_timm(narrow, out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def half_then_fail(path, tensors):
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError("killed half-way")

    monkeypatch.setattr(timm_format, "write_safetensors", half_then_fail)
    with pytest.raises(OSError, match="killed half-way"):
        timm_format.export_timm(narrow_mixer(classes=5), out, overwrite=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


# --- the command line ------------------------------------------------------------


def test_cli_writes_the_repository_and_refuses_an_existing_one(tmp_path, narrow, capsys):
    path = str(tmp_path / "narrow.keras")
    narrow.save(path)
    out = str(tmp_path / "repo")
    assert cli.main(["export", "timm", path, "-o", out, "--labels", "digits"]) == 2  # 10 != 5
    assert "labels: the model has 5 classes; got 10 labels" in capsys.readouterr().err
    assert cli.main(["export", "timm", path, "-o", out]) == 0
    printed = capsys.readouterr().out
    assert "mixer_s32_224" in printed and "local-dir:" in printed
    assert cli.main(["export", "timm", path, "-o", out]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert cli.main(["export", "timm", path, "-o", out, "--overwrite"]) == 0
    assert cli.main(["export", "timm", "S/32", "-o", str(tmp_path / "x")]) == 2
    assert "needs --weights" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("fields, parts", [
    (dict(model_args={"stem_norm": True}), ("model_args: expected an object of img_size and "
                                            "mlp_ratio only", "{'stem_norm': True}")),
    (dict(model_args={"mlp_ratio": [0.5, 2.0]}), ("model_args.mlp_ratio:", "[0.5, 2.0]")),
    (dict(model_args={"img_size": 448}), ("model_args.img_size:", "[224, 224]", "got 448")),
    (dict(keras_mixer={"gelu_form": "sigmoid"}), ("keras_mixer:", "'tanh' or 'erf'",
                                                  "'sigmoid'")),
], ids=["other-arg", "channel-ratio", "img-size", "gelu-form"])
def test_loader_refuses_model_args_and_fields_it_cannot_build(tmp_path, fields, parts):
    from keras_mixer.weights.timm import read_timm_config

    config = {"architecture": "mixer_s32_224", "num_classes": 5, **fields,
              "pretrained_cfg": {"input_size": [3, 224, 224]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=key_parts("weights:", "config.json' field", *parts)):
        read_timm_config(str(tmp_path / "config.json"))
