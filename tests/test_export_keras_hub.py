"""keras-mixer export keras-hub: a preset directory in keras-hub's own layout
that keras-hub's own `from_preset` opens (after `import keras_mixer`, in either
import order) into a model predicting what keras-mixer predicts on the same raw
images, and that keras-hub's upload check accepts."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import TINY, TINY_SIZE, key_parts, tiny_mixer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="keras-hub is not installed (pip install 'keras-mixer[keras-hub]')")

FILES = {"config.json", "metadata.json", "model.weights.h5", "task.json", "task.weights.h5",
         "preprocessor.json", "image_converter.json"}
# Raw images of two sizes, neither the model's: one to shrink, one to enlarge.
RAW_SHAPES = ((3, 23, 31, 3), (2, 12, 9, 3))


def _export(*args, **kwargs):
    from keras_mixer.export import export_keras_hub

    return export_keras_hub(*args, **kwargs)


def _timm_like(model):
    """`model` with a timm MIIL-like transform: per-channel mean/std on [0, 1],
    crop 0.9, bilinear (a checkpoint's own, carried by its `rescaling` layer)."""
    import keras

    config = model.get_config()
    layer = next(l for l in config["layers"] if l["name"] == "rescaling")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    layer["config"].update(scale=list(1 / (255 * std)), offset=list(-mean / std),
                           crop_fraction=0.9, interpolation="bilinear")
    other = keras.Model.from_config(config)
    other.set_weights(model.get_weights())
    return other


def _raw(seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape).astype(np.uint8) for shape in RAW_SHAPES]


def _keras_mixer_outputs(model, raw):
    """keras-mixer on raw images: its eval transform per image, then the model."""
    from keras_mixer import EvalTransform

    transform = EvalTransform.of(model)
    return np.asarray(model.predict(np.stack([transform(image) for image in raw]), verbose=0))


@pytest.fixture
def logits_mixer(tiny_checkpoint):
    """TINY with the checkpoint's random head, returning logits (16x16, 7 classes)."""
    return tiny_mixer(tiny_checkpoint[0], classifier_activation=None)


def test_preset_has_keras_hubs_files_and_fields(tmp_path, logits_mixer):
    import keras_hub

    report = _export(logits_mixer, tmp_path / "preset")
    out = tmp_path / "preset"
    assert set(os.listdir(out)) == FILES
    assert set(report["files"]) == FILES and report["task"] == "MixerImageClassifier"
    assert report["output_kind"] == "logits"
    assert max(report["check"]["max_abs_error"].values()) <= 1e-5

    def read(name):
        return json.loads((out / name).read_text())

    config = read("config.json")
    assert config["registered_name"] == "keras_mixer>MixerBackbone"
    assert {k: config["config"][k] for k in (*TINY, "image_shape", "gelu_form")} == {
        **TINY, "image_shape": [TINY_SIZE, TINY_SIZE, 3], "gelu_form": "tanh"}
    metadata = read("metadata.json")
    assert metadata["tasks"] == ["ImageClassifier"]
    assert metadata["keras_hub_version"] == keras_hub.__version__
    head = logits_mixer.get_layer("head").count_params()
    rescaling = logits_mixer.get_layer("rescaling").count_params()
    assert metadata["parameter_count"] == logits_mixer.count_params() - head - rescaling
    task = read("task.json")
    assert task["registered_name"] == "keras_mixer>MixerImageClassifier"
    assert task["config"]["num_classes"] == 7 and task["config"]["activation"] is None
    assert task["config"]["pooling"] == "avg"
    converter = read("image_converter.json")
    assert converter["registered_name"] == "keras_mixer>MixerImageConverter"
    assert {k: converter["config"][k] for k in (
        "image_size", "crop_fraction", "interpolation", "scale", "offset")} == {
        "image_size": [TINY_SIZE, TINY_SIZE], "crop_fraction": 0.875,
        "interpolation": "bicubic", "scale": pytest.approx(1 / 127.5), "offset": -1.0}
    assert read("preprocessor.json")["registered_name"] == (
        "keras_mixer>MixerImageClassifierPreprocessor")


@pytest.mark.parametrize("imports", ["import keras_mixer; import keras_hub",
                                     "import keras_hub; import keras_mixer"])
def test_from_preset_in_a_new_process_predicts_what_keras_mixer_does(
        tmp_path, logits_mixer, imports):
    """A timm-like transform (per-channel mean/std, crop 0.9, bilinear) so the
    converter must carry each part; raw images of two sizes, neither 16x16."""
    model = _timm_like(logits_mixer)
    preset = tmp_path / "preset"
    _export(model, preset)
    raw = _raw(1)
    for i, images in enumerate(raw):
        np.save(tmp_path / f"raw{i}.npy", images)
    code = textwrap.dedent(f"""
        {imports}
        import numpy as np
        classifier = keras_hub.models.ImageClassifier.from_preset({str(preset)!r})
        backbone = keras_hub.models.Backbone.from_preset({str(preset)!r})
        print(type(classifier).__name__, type(backbone).__name__,
              type(classifier.preprocessor.image_converter).__name__)
        for i in range({len(raw)}):
            raw = np.load({str(tmp_path)!r} + f"/raw{{i}}.npy")
            np.save({str(tmp_path)!r} + f"/out{{i}}.npy", classifier.predict(raw, verbose=0))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-3:] == [
        "MixerImageClassifier", "MixerBackbone", "MixerImageConverter"]
    for i, images in enumerate(raw):
        expected = _keras_mixer_outputs(model, images)
        got = np.load(tmp_path / f"out{i}.npy")
        assert got.shape == expected.shape == (len(images), 7)
        assert np.abs(expected).max() > 0.1  # a real head, not the zero init
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_softmax_head_keeps_its_activation(tmp_path, tiny_checkpoint):
    import keras_hub

    model = tiny_mixer(tiny_checkpoint[0])  # softmax
    report = _export(model, tmp_path / "preset")
    assert report["output_kind"] == "probabilities"
    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / "preset"))
    raw = _raw(2)[0]
    got = loaded.predict(raw, verbose=0)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, _keras_mixer_outputs(model, raw), atol=1e-6, rtol=0)


def test_model_without_head_gives_backbone_and_preprocessor(tmp_path, tiny_checkpoint):
    import keras
    import keras_hub

    model = tiny_mixer(tiny_checkpoint[0], include_top=False)  # the (4, 4, 16) feature map
    report = _export(model, tmp_path / "preset")
    assert set(os.listdir(tmp_path / "preset")) == FILES - {"task.json", "task.weights.h5"}
    assert report["task"] is None and report["check"]["max_abs_error"]["features"] <= 1e-5
    backbone = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    converter = keras_hub.layers.ImageConverter.from_preset(str(tmp_path / "preset"))
    raw = _raw(3)[0]
    got = np.asarray(backbone.predict(converter(raw), verbose=0))
    # The same features the model gives: its token map after the final LayerNorm.
    trunk = keras.Model(model.inputs, model.get_layer("pre_head_layer_norm").output)
    expected = _keras_mixer_outputs(trunk, raw)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-5, rtol=0)
    # keras-hub builds its own ImageClassifier on it, with a new head.
    fresh = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / "preset"), num_classes=3)
    assert fresh.predict(raw, verbose=0).shape == (len(raw), 3)


def test_keras_hub_upload_check_accepts_the_preset(tmp_path, logits_mixer):
    """keras_hub.upload_preset validates the directory (preset_utils'
    _validate_backbone: config.json parses, model.weights.h5 exists) before it
    looks at the URI: an unknown scheme then fails on the URI alone, with no
    network; a preset missing its weights fails the check itself."""
    import keras_hub
    from keras_hub.src.utils import preset_utils

    preset = str(tmp_path / "preset")
    _export(logits_mixer, preset)
    preset_utils._validate_backbone(preset)
    with pytest.raises(ValueError, match="Unknown URI"):
        keras_hub.upload_preset("local://nowhere", preset)
    # The model card upload_preset writes for a new Hugging Face repository.
    card = tmp_path / "card"
    shutil.copytree(preset, card)
    preset_utils.create_model_card(str(card))
    text = (card / "README.md").read_text()
    assert "library_name: keras-hub" in text and "`Mixer` model" in text
    assert "ImageClassifier" in text
    os.remove(card / "model.weights.h5")
    with pytest.raises(FileNotFoundError, match="weights file is missing"):
        keras_hub.upload_preset("local://nowhere", str(card))


@pytest.mark.parametrize("kwargs, error, parts", [
    (dict(output="out.keras"), ValueError, ("output", "directory", "'out.keras'")),
    (dict(tolerance=-1), ValueError, ("tolerance", "None or a number > 0", "-1")),
    (dict(tolerance="1e-4"), ValueError, ("tolerance", "'1e-4'")),
    (dict(model="Z/99"), ValueError, ("model", "'Z/99'")),
    (dict(model="B/16", weights="nope"), ValueError, ("weights", "'nope'")),
    (dict(model="missing.keras"), FileNotFoundError, ("model", "'missing.keras'")),
])
def test_bad_arguments_are_refused_naming_them(tmp_path, monkeypatch, kwargs, error, parts):
    monkeypatch.chdir(tmp_path)
    kwargs = {"model": "S/32", "output": "out", "weights": None, **kwargs}
    with pytest.raises(error, match=key_parts(*parts)):
        _export(kwargs.pop("model"), kwargs.pop("output"), **kwargs)
    assert os.listdir(tmp_path) == []  # refused before any work


def test_existing_output_is_kept_unless_overwrite(tmp_path, logits_mixer):
    tmp_path = tmp_path / "outputs"
    out = tmp_path / "preset"
    tmp_path.mkdir()
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=key_parts("output", repr(str(out)), "overwrite")):
        _export(logits_mixer, str(out))
    assert os.listdir(out) == ["mine.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match=key_parts("output", "not a directory")):
        _export(logits_mixer, str(tmp_path / "file"), overwrite=True)
    _export(logits_mixer, str(out), overwrite=True)
    assert set(os.listdir(out)) == FILES
    assert sorted(os.listdir(tmp_path)) == ["file", "preset"]  # no scratch left


def test_a_failed_export_leaves_the_old_preset_and_no_scratch(tmp_path, logits_mixer,
                                                              monkeypatch):
    """Written into a scratch directory and renamed: a failure after keras-hub
    wrote its files (here, the check) leaves the previous preset whole."""
    from keras_mixer.export import hub

    tmp_path = tmp_path / "outputs"
    out = tmp_path / "preset"
    _export(logits_mixer, str(out))
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def failing(*args):
        assert set(os.listdir(args[0])) == FILES  # everything was written, elsewhere
        raise ValueError("tolerance: check failed")

    monkeypatch.setattr(hub, "_check", failing)
    with pytest.raises(ValueError, match="tolerance"):
        _export(logits_mixer, str(out), overwrite=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["preset"]


def test_cli_writes_the_preset_and_refuses_an_existing_one(tmp_path, logits_mixer, capsys):
    from keras_mixer import cli

    path = str(tmp_path / "m.keras")
    logits_mixer.save(path)
    out = str(tmp_path / "preset")
    assert cli.main(["export", "keras-hub", path, "-o", out]) == 0
    printed = capsys.readouterr().out
    assert "config.json" in printed and "features 0" in printed
    assert set(os.listdir(out)) == FILES
    assert cli.main(["export", "keras-hub", path, "-o", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", "keras-hub", "S/32", "-o", str(tmp_path / "x")]) == 2
    assert "weights" in capsys.readouterr().err
