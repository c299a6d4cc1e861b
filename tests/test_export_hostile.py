"""Exports under hostile input (issue #19): heads whose output kind only the
graph tells, files that must not pass verification, a model and sidecar split
by a failed rename, pathlib paths, calibration arrays with NaN/Inf, tampered
sidecars."""

import importlib
import json
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import images, key_parts, tiny_mixer, tiny_params, write_checkpoint

from keras_mixer import cli
from keras_mixer.export import common, metadata, tflite
from keras_mixer.export.runtimes import LiteModel
from keras_mixer.export.saved_model import export_saved_model
from keras_mixer.export.servers import export_onnx
from keras_mixer.export.tflite import export_tflite, representative_images
from keras_mixer.export.verify import verify

HEADS = {
    "softmax_layer": lambda x: keras.layers.Softmax()(keras.layers.Dense(3)(x)),
    "dense_softmax": lambda x: keras.layers.Dense(3, activation="softmax")(x),
    "dense_linear": lambda x: keras.layers.Dropout(0.1)(keras.layers.Dense(3)(x)),
    "activation_layer": lambda x: keras.layers.Activation("softmax")(keras.layers.Dense(3)(x)),
}
KINDS = {"softmax_layer": "probabilities", "dense_softmax": "probabilities",
         "dense_linear": "logits", "activation_layer": "probabilities"}


def headed(head):
    """A tiny backbone with the user's own 3-class head (random, non-zero)."""
    keras.utils.set_random_seed(0)
    backbone = tiny_mixer(include_top=False, pooling="avg")
    return keras.Model(backbone.input, head(backbone.output))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_output_kind_is_read_from_the_graph(head):
    assert common.output_kind(headed(HEADS[head])) == KINDS[head]


@pytest.mark.parametrize("head, why", [
    (lambda x: keras.layers.Dense(3, activation="sigmoid")(x), "sigmoid"),
    (lambda x: keras.layers.Activation("relu")(keras.layers.Dense(3)(x)), "'relu'"),
    (lambda x: keras.layers.Lambda(lambda t: t * 2)(keras.layers.Dense(3)(x)), "Lambda"),
])
def test_unknown_heads_are_refused_unless_stated(head, why):
    model = headed(head)
    with pytest.raises(ValueError, match=key_parts("model:", why, "output_kind")):
        common.output_kind(model)
    assert common.output_kind(model, "logits") == "logits"
    with pytest.raises(ValueError, match=key_parts("output_kind:", "probabilities", "'soft'")):
        common.output_kind(model, "soft")


def test_sigmoid_head_is_refused_before_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "convert", _no_conversion)
    model = headed(lambda x: keras.layers.Dense(3, activation="sigmoid")(x))
    with pytest.raises(ValueError, match=key_parts("model:", "sigmoid", "output_kind")):
        export_tflite(model, str(tmp_path / "m.tflite"))


def test_cli_output_kind_flag(tmp_path, capsys):
    path = str(tmp_path / "sigmoid.keras")
    headed(lambda x: keras.layers.Dense(3, activation="sigmoid")(x)).save(path)
    out = str(tmp_path / "m.tflite")
    assert cli.main(["export", "tflite", path, "-o", out]) == 2
    assert "--output-kind" in capsys.readouterr().err and not os.path.exists(out)
    assert cli.main(["export", "tflite", path, "-o", out, "--output-kind", "logits"]) == 0
    assert metadata.read_contract(out)["output"]["kind"] == "logits"
    assert cli.main(["export", "onnx", path, "-o", str(tmp_path / "m.onnx"),
                     "--output-kind", "soft"]) == 2


@pytest.mark.parametrize("head", ["softmax_layer", "dense_linear"])
def test_every_format_agrees_with_keras_on_its_own_outputs(tmp_path, head):
    model = headed(HEADS[head])
    x = images(np.random.default_rng(1), 4)
    expected = np.asarray(model(x, training=False))
    as_probabilities = expected if KINDS[head] == "probabilities" else softmax(expected)
    # SavedModel: probabilities, never a second softmax; top_k fits 3 classes
    # by default; a pathlib output.
    path = export_saved_model(model, tmp_path / "served")
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, as_probabilities, atol=1e-5)
    # TFLite and ONNX: the model's own outputs, and the sidecar says which.
    out = tmp_path / "m.tflite"
    report = export_tflite(model, out)
    assert report["contract"]["output"]["kind"] == KINDS[head]
    lite = LiteModel(str(out))
    np.testing.assert_allclose(np.concatenate([lite.predict(i[None]) for i in x]), expected,
                               atol=1e-4)
    assert metadata.read_contract(out)["output"]["kind"] == KINDS[head]
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report["contract"]["output"]["kind"] == KINDS[head]
    assert report["check"]["max_abs_error"] < 1e-4


@pytest.fixture
def two_models(tmp_path, rng):
    """(.keras path of model A, .tflite of A, .keras path of B with other weights)."""
    a = write_checkpoint(tmp_path / "a.npz", tiny_params(rng))
    b = write_checkpoint(tmp_path / "b.npz", tiny_params(rng))
    tiny_mixer(a).save(tmp_path / "a.keras")
    tiny_mixer(b).save(tmp_path / "b.keras")
    out = str(tmp_path / "a.tflite")
    export_tflite(str(tmp_path / "a.keras"), out)
    return str(tmp_path / "a.keras"), out, str(tmp_path / "b.keras")


def test_verify_gates_a_file_of_another_model(two_models, capsys):
    model_a, out, model_b = two_models
    report = verify(out, model_a, count=20)
    assert report["gate"]["passed"] and report["gate"]["kind"] == "float"
    failed = importlib.import_module("keras_mixer.export.verify").VerificationFailed
    with pytest.raises(failed, match=key_parts(out, "failed", "top-1 agreement",
                                                           "no-gate")) as err:
        verify(out, model_b, count=20)
    assert not err.value.report["gate"]["passed"]
    assert not verify(out, model_b, count=20, gate=False)["gate"]["passed"]
    with pytest.raises(ValueError, match=key_parts("thresholds:", "top1", "got")):
        verify(out, model_b, thresholds={"top1": 0.5})
    capsys.readouterr()
    assert cli.main(["export", "verify", out, model_b, "-n", "20"]) == 1
    assert "FAILED" in capsys.readouterr().err
    assert cli.main(["export", "verify", out, model_b, "-n", "20", "--no-gate"]) == 0
    assert cli.main(["export", "verify", out, model_b, "-n", "20", "--min-top1", "0",
                     "--max-error", "100"]) == 0


def test_a_failed_model_rename_leaves_a_pair_readers_refuse(two_models, tmp_path, monkeypatch):
    _, out, model_b = two_models
    real_replace = os.replace

    def replace(src, dst):
        if os.path.abspath(dst) == os.path.abspath(out):
            raise OSError("simulated: killed between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        export_tflite(model_b, out, overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    sidecar = metadata.sidecar_path(out)
    for path in (out, sidecar, pathlib.Path(out)):
        with pytest.raises(ValueError, match=key_parts("path:", out, "sidecar", sidecar)):
            metadata.read_contract(path)


def test_a_directory_at_the_output_is_refused_before_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "convert", _no_conversion)
    (tmp_path / "m.tflite").mkdir()
    with pytest.raises(IsADirectoryError, match=key_parts("output:", "m.tflite", "directory")):
        export_tflite(tiny_mixer(), str(tmp_path / "m.tflite"), overwrite=True)
    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(IsADirectoryError, match=key_parts("output:", "m.onnx", "directory")):
        export_onnx(tiny_mixer(), str(tmp_path / "m.onnx"), overwrite=True)


def _no_conversion(*args, **kwargs):
    raise AssertionError("converted before the arguments were checked")


@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), (np.inf, "inf"), (-1.0, "-1.0"),
                                          (256.0, "256.0")])
def test_calibration_pixels_must_be_finite_0_to_255(value, shown):
    x = images(np.random.default_rng(0), 12)
    x[3, 1, 2, 0] = value
    with pytest.raises(ValueError, match=key_parts("representative:", "[0, 255]", shown,
                                                   "(3, 1, 2, 0)")):
        representative_images(x, (16, 16))
    with pytest.raises(ValueError, match=key_parts("representative:", "dtype", "<U")):
        representative_images(x.astype(str), (16, 16))


def test_nan_calibration_is_refused_before_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr(tflite, "convert", _no_conversion)
    x = images(np.random.default_rng(0), 12)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=key_parts("representative:", "nan", "(0, 0, 0, 0)")):
        export_tflite(tiny_mixer(), str(tmp_path / "m.tflite"), quantize="int8",
                      representative=x)


@pytest.mark.parametrize("text, field", [
    ("{oops", "expected JSON"), ("[1, 2]", "JSON object"), ('{"format": "keras-mixer-tflite/1"}',
                                                       "input"),
    ("good-but-output-list", "output"), ("good-but-quantization-list", "input.quantization"),
])
def test_tampered_sidecars_are_refused_naming_file_and_field(tmp_path, text, field):
    sidecar = tmp_path / "m.json"
    good = {"format": "keras-mixer-tflite/1",
            "input": {"shape": [1, 16, 16, 3], "dtype": "float32", "quantization": None,
                      "color": "RGB", "range": [0, 255]},
            "output": {"shape": [1, 2], "dtype": "float32", "quantization": None,
                       "kind": "logits"},
            "labels": ["a", "b"], "model": "m", "quantize": "none", "target": "cpu"}
    if text == "good-but-output-list":
        text = json.dumps({**good, "output": [1, 2]})
    elif text == "good-but-quantization-list":
        text = json.dumps({**good, "input": {**good["input"], "dtype": "uint8",
                                             "quantization": [0.5, 3]}})
    metadata.read_contract(_write(sidecar, json.dumps(good)))  # the untampered one reads
    with pytest.raises(ValueError, match=key_parts(field, str(sidecar))):
        metadata.read_contract(_write(sidecar, text))


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("tflite_accuracy, passed", [(0.88, True), (0.87, False)])
def test_int8_gate_allows_a_point_or_two_images_of_accuracy(tflite_accuracy, passed):
    gate = importlib.import_module("keras_mixer.export.verify")._gate
    report = {"images": 100, "top1_agreement": 0.95, "max_abs_error": 0.3,
              "keras_accuracy": 0.9, "tflite_accuracy": tflite_accuracy}
    result = gate(report, "tflite_accuracy", "quantized", None)
    assert result["passed"] is passed
    assert gate(report, "tflite_accuracy", "quantized", {"accuracy_drop": None})["passed"]
    assert not gate(report, "tflite_accuracy", "float", None)["passed"]  # max abs error 0.3
