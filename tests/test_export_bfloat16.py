"""bfloat16 SavedModel: a Mixer trained on the embedded digits, exported in
float32 and bfloat16 (with and without XLA), gives float32 probabilities that
stay within the documented tolerance of float32 on the whole test split, and
really computes in bfloat16 (its answers differ from float32)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mixer import cli
from keras_mixer.export.rebuild import with_precision
from keras_mixer.export.saved_model import BFLOAT16_TOLERANCE, export_saved_model
from helpers import TINY_SIZE

SIZE = TINY_SIZE


@pytest.fixture
def digits(digits_mixer):
    """The shared SMALL Mixer trained on the digits (conftest.digits_mixer)."""
    return digits_mixer.model, digits_mixer.x_test.astype(np.float32), digits_mixer.y_test


def _serve(path, images):
    fn = tf.saved_model.load(path).signatures["serving_default"]
    return fn(images=tf.constant(images))["probabilities"]


@pytest.mark.parametrize("xla", [False, True])
def test_bfloat16_within_tolerance_of_float32(tmp_path, digits, xla):
    model, x, y = digits
    f32 = _serve(export_saved_model(model, str(tmp_path / "f32"), xla=xla), x)
    bf16 = _serve(export_saved_model(model, str(tmp_path / "bf16"), xla=xla,
                                     precision="bfloat16"), x)
    assert bf16.dtype == tf.float32
    f32, bf16 = f32.numpy(), bf16.numpy()
    diff = np.abs(bf16 - f32).max()
    assert 1e-4 < diff <= BFLOAT16_TOLERANCE["max_abs_error"]  # bfloat16 ran, and stayed close
    assert np.mean(bf16.argmax(-1) == f32.argmax(-1)) >= BFLOAT16_TOLERANCE["top1_agreement"]
    f32_accuracy = np.mean(f32.argmax(-1) == y)
    assert f32_accuracy > 0.9
    assert np.mean(bf16.argmax(-1) == y) >= f32_accuracy - BFLOAT16_TOLERANCE["accuracy_drop"]
    np.testing.assert_allclose(bf16.sum(-1), 1.0, atol=1e-5)  # the softmax ran in float32


def test_with_precision_lowers_compute_not_weights(digits):
    model, _, _ = digits
    lowered = with_precision(model, "bfloat16")
    assert with_precision(model, "float32") is model
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    dense = lowered.get_layer("MixerBlock_0").channel_mixing.dense_0
    assert dense.dtype_policy.name == "mixed_bfloat16" and dense.kernel.dtype == "float32"
    assert lowered.layers[-1].dtype_policy.name == "float32"
    for a, b in zip(model.get_weights(), lowered.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_precision_is_checked_and_on_the_cli(tmp_path, digits, capsys):
    model, _, _ = digits
    with pytest.raises(ValueError, match=r"precision: expected one of \['float32', 'bfloat16'\]; got 'float16'"):
        export_saved_model(model, str(tmp_path / "m"), precision="float16")
    assert not (tmp_path / "m").exists()
    path = str(tmp_path / "digits.keras")
    model.save(path)
    assert cli.main(["export", "saved-model", path, "-o", str(tmp_path / "srv"),
                     "--precision", "bfloat16"]) == 0
    assert "compute: bfloat16" in capsys.readouterr().out
    assert (tmp_path / "srv" / "1" / "saved_model.pb").is_file()
    assert cli.main(["export", "saved-model", path, "-o", str(tmp_path / "x"),
                     "--precision", "fp8"]) == 2
    assert "precision: expected one of ['float32', 'bfloat16']; got 'fp8'" in capsys.readouterr().err
