"""Full-integer int8 TFLite in one XNNPACK partition: the int8 export copy's
LayerNorm is Keras' function, the CPU export keeps only RSQRT in float and runs
whole in XNNPACK, accuracy on the embedded digits stays within a point of
Keras, and the old formulation (eps as its own int8 ADD) is what split it."""

import keras
import numpy as np
import pytest

from keras_mixer.export import rebuild
from keras_mixer.export.tflite import export_tflite
from keras_mixer.export.verify import verify
from keras_mixer.model import Mixer
from helpers import SMALL, TINY_SIZE

SIZE = TINY_SIZE
LAYER_NORMS = 2 * SMALL["num_blocks"] + 1  # two per block, one before the head


@pytest.fixture
def digits(digits_mixer):
    """The shared SMALL Mixer trained on the digits (conftest.digits_mixer)."""
    return digits_mixer.model, digits_mixer.x_train, (digits_mixer.x_test, digits_mixer.y_test)


def test_int8_copy_computes_the_same_function(digits, rng):
    model, _, _ = digits
    copy = rebuild.rebuild_for_target(model, "cpu", "int8")
    norms = [l for l in copy._flatten_layers() if isinstance(l, rebuild._Int8LayerNorm)]
    assert len(norms) == LAYER_NORMS
    x = rng.uniform(0, 255, (16, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5, rtol=0)


def test_full_int8_is_one_xnnpack_partition_within_a_point(tmp_path, digits):
    model, x_train, held_out = digits
    out = str(tmp_path / "int8.tflite")
    report = export_tflite(model, out, quantize="int8", representative=x_train[:200])
    assert report["xnnpack"] == {"partitions": 1, "whole_graph": True}
    assert set(report["float_ops"]) == {"SOFTMAX", "RSQRT"}
    # Only the statistics' root and the final softmax are float; every matmul,
    # GELU and residual op is int8.
    floats = {k for k in report["ops"] if k.endswith("(float32)")}
    assert floats == {"RSQRT(float32)", "SOFTMAX(float32)", "QUANTIZE(float32)"}
    assert report["ops"]["RSQRT(float32)"] == LAYER_NORMS
    assert report["ops"]["FULLY_CONNECTED(int8)"] >= 4 * SMALL["num_blocks"] + 1
    result = verify(out, model, images=held_out, count=len(held_out[0]))
    assert result["keras_accuracy"] > 0.9
    assert result["tflite_accuracy"] >= result["keras_accuracy"] - 0.01
    assert result["top1_agreement"] >= 0.97


def test_eps_as_its_own_int8_add_splits_the_graph(tmp_path, digits, monkeypatch):
    """The reason for _Int8LayerNorm: with var + eps as a separate ADD, each
    LayerNorm's ADD falls out of XNNPACK (eps's scale is out of its range)."""
    model, x_train, _ = digits
    monkeypatch.setattr(rebuild._Int8LayerNorm, "_variance_plus_epsilon",
                        rebuild._CentredLayerNorm._variance_plus_epsilon)
    report = export_tflite(model, str(tmp_path / "split.tflite"), quantize="int8",
                           representative=x_train[:50])
    assert report["xnnpack"] == {"partitions": LAYER_NORMS + 1, "whole_graph": False}


def test_integer_io_keeps_rsqrt_integer(tmp_path, digits):
    # Integer-only accelerators get no float op: RSQRT stays int8 (and XNNPACK,
    # which has no int8 RSQRT, splits there).
    model, x_train, _ = digits
    report = export_tflite(model, str(tmp_path / "u8.tflite"), quantize="int8",
                           representative=x_train[:50], io_dtype="uint8")
    assert "RSQRT(int8)" in report["ops"] and report["float_ops"] == []
    assert report["xnnpack"]["partitions"] == LAYER_NORMS + 1


@pytest.mark.large
def test_s16_full_int8_is_one_partition(tmp_path):
    model = Mixer("S/16", input_shape=(224, 224, 3))
    images = np.random.default_rng(0).uniform(0, 255, (16, 224, 224, 3)).astype(np.float32)
    report = export_tflite(model, str(tmp_path / "s16.tflite"), quantize="int8",
                           representative=images, num_samples=16)
    assert report["xnnpack"] == {"partitions": 1, "whole_graph": True}
