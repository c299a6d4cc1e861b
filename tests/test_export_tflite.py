"""TFLite export: every quantization mode converts and runs in LiteRT, float32
matches Keras, int8 keeps the accuracy of a model trained on the embedded
digits, op lists fit each target, the sidecar contract is the real one, and
bad input is refused with a message."""

import json
import os

import keras
import numpy as np
import pytest
from helpers import TINY_SIZE as SIZE
from helpers import key_parts, tiny_mixer

from keras_mixer import preprocessing
from keras_mixer.export import metadata, targets
from keras_mixer.export.tflite import export_tflite
from keras_mixer.export.verify import LiteModel, verify_tflite
from keras_mixer import cli
from keras_mixer.model import Mixer


@pytest.fixture
def digits(digits_mixer):
    """(path of a .keras Mixer trained on the embedded digits, test images, labels)."""
    return digits_mixer.path, digits_mixer.x_test, digits_mixer.y_test


def _assert_lite_matches_keras(path, model, x):
    """The .tflite file in LiteRT gives the Keras model's outputs on images x."""
    lite, x = LiteModel(path), np.asarray(x, np.float32)
    got = np.stack([lite(image) for image in x])
    expected = model.predict(x, verbose=0)
    # A random-init Mixer's zero head gives every image the same output, which
    # any broken conversion of the body would match too.
    assert np.ptp(expected, axis=0).max() > 1e-2
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("activation", ["softmax", None])
def test_float32_matches_keras(tmp_path, rng, tiny_checkpoint, activation):
    model = tiny_mixer(tiny_checkpoint[0], classifier_activation=activation)
    report = export_tflite(model, str(tmp_path / "m.tflite"))
    _assert_lite_matches_keras(report["path"], model, rng.uniform(0, 255, (8, SIZE, SIZE, 3)))
    # Static batch 1: dense layers stay FULLY_CONNECTED, one XNNPACK partition.
    assert "BATCH_MATMUL(float32)" not in report["ops"]
    assert report["xnnpack"] == {"partitions": 1, "whole_graph": True}
    kind = "probabilities" if activation else "logits"
    assert metadata.read_contract(report["path"])["output"]["kind"] == kind


@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_each_mode_runs_in_litert_and_keeps_accuracy(tmp_path, digits, quantize):
    path, x_test, y_test = digits
    out = str(tmp_path / f"{quantize}.tflite")
    report = export_tflite(path, out, quantize=quantize, labels="digits")
    result = verify_tflite(out, path, images=(x_test, y_test), count=len(x_test))
    assert result["images"] == 360
    assert result["keras_accuracy"] > 0.9  # the fixture really learned the digits
    # Within 1 point of the Keras model on the whole test split.
    assert result["tflite_accuracy"] >= result["keras_accuracy"] - 0.01
    assert result["top1_agreement"] >= 0.97
    if quantize == "none":
        assert result["max_abs_error"] < 1e-4
    if quantize == "int8":  # float output: the softmax stays float (1/256 steps otherwise)
        assert "SOFTMAX(float32)" in report["ops"] and "FULLY_CONNECTED(int8)" in report["ops"]
    contract = metadata.read_contract(out)
    assert contract["quantize"] == quantize and contract["labels"] == list("0123456789")
    assert report["bytes"] == result["bytes"] == os.path.getsize(out)


@pytest.mark.parametrize("io_dtype", ["uint8", "int8"])
def test_int8_integer_io_contract_is_read_from_the_file(tmp_path, digits, io_dtype):
    path, x_test, y_test = digits
    out = str(tmp_path / "q.tflite")
    export_tflite(path, out, quantize="int8", io_dtype=io_dtype, num_samples=100)
    contract = metadata.read_contract(out)
    lite = LiteModel(out)
    for key, detail in (("input", lite.input), ("output", lite.output)):
        assert contract[key]["dtype"] == io_dtype == np.dtype(detail["dtype"]).name
        scale, zero_point = detail["quantization"]
        assert contract[key]["quantization"] == {"scale": scale, "zero_point": zero_point}
    result = verify_tflite(out, path, images=(x_test, y_test), count=len(x_test))
    assert result["tflite_accuracy"] >= result["keras_accuracy"] - 0.01
    # Every op of the body is integer: nothing falls back to float.
    assert not [op for op in targets.model_ops(out) if op["dtype"] == "float32"]


def test_selective_float_ops_keep_layernorm_in_float(tmp_path, digits):
    path, x_test, y_test = digits
    out = str(tmp_path / "mixed.tflite")
    report = export_tflite(path, out, quantize="int8", float_ops="layernorm")
    assert "MEAN(float32)" in report["ops"] and "RSQRT(float32)" in report["ops"]
    assert "FULLY_CONNECTED(int8)" in report["ops"]
    result = verify_tflite(out, path, images=(x_test, y_test), count=len(x_test))
    assert result["tflite_accuracy"] >= result["keras_accuracy"] - 0.01


@pytest.mark.parametrize("target", ["cpu", "gpu", "nnapi", "edgetpu"])
def test_op_lists_fit_each_target(tmp_path, rng, tiny_checkpoint, target):
    model = tiny_mixer(tiny_checkpoint[0])
    quantize, io = ("int8", "uint8") if target == "edgetpu" else ("none", "float32")
    images = rng.uniform(0, 255, (20, SIZE, SIZE, 3))
    report = export_tflite(model, str(tmp_path / "t.tflite"), quantize=quantize, target=target,
                           representative=images, io_dtype=io)
    names = {key.split("(")[0] for key in report["ops"]}
    assert report["unsupported"] == []
    if target == "cpu":
        assert "GELU" in names
    else:
        assert "GELU" not in names and "LOGISTIC" in names
        assert names <= targets.SUPPORTED_OPS[target]
    if quantize == "none":  # the sigmoid form is the same function
        _assert_lite_matches_keras(report["path"], model, rng.uniform(0, 255, (4, SIZE, SIZE, 3)))


def test_unsupported_ops_are_named():
    ops = [{"op": "GELU", "dtype": "float32"}, {"op": "FULLY_CONNECTED", "dtype": "int8"},
           {"op": "FULLY_CONNECTED", "dtype": "float32"}, {"op": "QUANTIZE", "dtype": "float32"},
           {"op": "CUSTOM:FlexErf", "dtype": "float32"}]
    assert targets.unsupported_ops(ops, "gpu") == ["CUSTOM:FlexErf (custom op)", "GELU"]
    assert targets.unsupported_ops(ops, "cpu") == ["CUSTOM:FlexErf (custom op)"]
    # The Edge TPU runs only quantized ops; QUANTIZE takes float input by design.
    assert targets.unsupported_ops(ops, "edgetpu") == [
        "CUSTOM:FlexErf (custom op)", "FULLY_CONNECTED (float32: not quantized, runs on the host CPU)",
        "GELU"]


def test_read_contract_names_the_broken_field(tmp_path):
    report = export_tflite(tiny_mixer(classes=7), str(tmp_path / "m.tflite"))
    contract = metadata.read_contract(report["sidecar"])
    assert set(contract) == {"format", "input", "output", "labels", "model", "quantize", "target",
                             "preprocessing", "model_sha256", "model_bytes"}
    assert contract["model_bytes"] == report["bytes"]
    assert contract["preprocessing"] == {"crop_fraction": 0.875, "interpolation": "bicubic"}
    assert contract["input"] == {"shape": [1, SIZE, SIZE, 3], "dtype": "float32", "color": "RGB",
                                 "range": [0, 255], "quantization": None}
    contract["output"]["shape"] = [1, 3]
    with open(report["sidecar"], "w") as f:
        json.dump(contract, f)
    with pytest.raises(ValueError, match=key_parts("metadata output.shape:", "[1, len(labels)]", "[1, 3]")):
        metadata.read_contract(report["path"])
    contract["output"]["shape"] = [1, 7]
    for spec, parts in [
            (dict(crop_fraction=0, interpolation="bicubic"),
             ("metadata preprocessing.crop_fraction:", "(0, 1]", "got 0")),
            (dict(crop_fraction=0.9, interpolation="lanczos"),
             ("metadata preprocessing.interpolation:", "'bilinear'", "'lanczos'")),
            ([0.9], ("metadata preprocessing:", "an object", "[0.9]"))]:
        with open(report["sidecar"], "w") as f:
            json.dump(dict(contract, preprocessing=spec), f)
        with pytest.raises(ValueError, match=key_parts(*parts)):
            metadata.read_contract(report["path"])
    # A sidecar from before the field: the paper's transform.
    del contract["preprocessing"]
    assert metadata.contract_transform(contract) == preprocessing.EvalTransform((SIZE, SIZE))


def test_bad_input_is_refused_with_a_message(tmp_path, rng):
    model = tiny_mixer(classes=7)
    out = str(tmp_path / "m.tflite")
    cases = [
        (dict(quantize="int4"), ("quantize:", "('none', 'float16', 'dynamic', 'int8')", "'int4'")),
        (dict(target="tpu"), ("target:", "('cpu', 'gpu', 'nnapi', 'edgetpu')", "'tpu'")),
        (dict(io_dtype="uint8"), ("io_dtype:", "'uint8'", "quantize='int8'", "quantize='none'")),
        (dict(quantize="none", target="edgetpu"), ("quantize:", "'int8'", "target='edgetpu'", "'none'")),
        (dict(quantize="int8", float_ops="LAYERNORM"),
         ("float_ops:", "['layernorm', 'residual']", "'LAYERNORM'")),
        (dict(quantize="int8", representative=rng.uniform(0, 255, (20, 32, 32, 3))),
         ("representative:", "(N, 16, 16, 3)", "(20, 32, 32, 3)")),
        (dict(quantize="int8", representative=rng.uniform(0, 255, (5, SIZE, SIZE, 3))),
         ("representative:", "at least 10", "got 5")),
        (dict(quantize="int8", representative="imagenet"),
         ("representative:", "['default', 'tfds:NAME', 'folder:PATH']", "'imagenet'")),
        (dict(num_samples=3), ("num_samples:", ">= 10", "got 3")),
    ]
    for kwargs, parts in cases:
        with pytest.raises(ValueError, match=key_parts(*parts)):
            export_tflite(model, out, **kwargs)
    with pytest.raises(ValueError, match=key_parts("output:", ".tflite", repr(str(tmp_path / "m.bin")))):
        export_tflite(model, str(tmp_path / "m.bin"))
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_model_and_output_errors(tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError, match=key_parts("output:", repr(str(out)), "--overwrite")):
        export_tflite(tiny_mixer(), str(out))
    assert out.read_bytes() == b"old"
    new = str(tmp_path / "n.tflite")
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match=key_parts("model:", repr(missing))):
        export_tflite(missing, new)
    h5 = str(tmp_path / "model.h5")
    with pytest.raises(ValueError, match=key_parts("model:", ".keras", "'S/32'", repr(h5))):
        export_tflite(h5, new)
    dense = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    dense.save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match=key_parts("model:", repr(str(tmp_path / "dense.keras")), "not an MLP-Mixer")):
        export_tflite(str(tmp_path / "dense.keras"), new)
    # A Mixer behind a resize layer takes any image size: no static shape to export.
    inputs = keras.Input((None, None, 3))
    dynamic = keras.Model(inputs, tiny_mixer()(keras.layers.Resizing(SIZE, SIZE)(inputs)))
    with pytest.raises(ValueError, match=key_parts("model:", "static input size", "(None, None, None, 3)")):
        export_tflite(dynamic, new)
    assert sorted(os.listdir(tmp_path)) == ["dense.keras", "m.tflite"]  # nothing else written


def test_cli_export_tflite_and_verify(tmp_path, digits, capsys):
    path, _, _ = digits
    out = str(tmp_path / "cli.tflite")
    assert cli.main(["export", "tflite", path, "-o", out, "--target", "gpu", "--labels", "digits"]) == 0
    printed = capsys.readouterr().out
    assert "XNNPACK (CPU): 1 partition(s)" in printed and "unsupported on gpu: none" in printed
    assert cli.main(["export", "verify", out, path, "-n", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 20 and report["max_abs_error"] < 1e-4
    assert cli.main(["export", "tflite", path, "-o", out, "--quantize", "int3"]) == 2
    err = capsys.readouterr().err
    assert "quantize:" in err and "'int3'" in err


@pytest.mark.large
def test_s16_at_224_int8_is_a_quarter_of_fp32_and_runs(tmp_path):
    model = Mixer("S/16", input_shape=(224, 224, 3))  # random init: size does not depend on it
    head = model.get_layer("head")  # initialised to zeros: make the output depend on the image
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape))
    fp32 = export_tflite(model, str(tmp_path / "fp32.tflite"))
    int8 = export_tflite(model, str(tmp_path / "int8.tflite"), quantize="int8", num_samples=32)
    assert int8["bytes"] <= 0.27 * fp32["bytes"]
    assert fp32["xnnpack"] == {"partitions": 1, "whole_graph": True}
    assert "FULLY_CONNECTED(int8)" in int8["ops"] and "GELU(int8)" not in int8["ops"]
    probs = LiteModel(int8["path"])(np.full((224, 224, 3), 128, np.float32))
    # The softmax stays float: an int8 one (1/256 steps) rounded all 1000 to 0.
    assert probs.shape == (1000,) and abs(float(probs.sum()) - 1) < 1e-3
