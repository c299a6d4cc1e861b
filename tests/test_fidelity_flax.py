"""keras_mixer against the authors' own Flax `MlpMixer` (transcribed in
benchmarks/flax_reference.py from google-research/vision_transformer) on one
checkpoint in the authors' layout: the logits must agree to 1e-4, here with
Keras on its TensorFlow backend and Flax on JAX."""

from unittest import mock

import keras
import numpy as np
import pytest

import keras_mixer
import keras_mixer.layers
from helpers import TINY, images

pytest.importorskip("flax", reason="the authors' Flax model needs flax (the test extra)")
from benchmarks.flax_reference import authors_mixer, unflatten  # noqa: E402

CLASSES = 7  # the tiny_checkpoint fixture's head


def flax_logits(params, x):
    import jax.numpy as jnp

    module = authors_mixer(TINY, CLASSES)
    tree = unflatten({k: jnp.asarray(v) for k, v in params.items()})
    return np.asarray(module.apply({"params": tree}, jnp.asarray(x / 127.5 - 1.0)))


def keras_logits(path, x):
    model = keras_mixer.Mixer(TINY, weights=path, classifier_activation=None)
    return np.asarray(model.predict(x, verbose=0))


def test_logits_match_the_authors_flax_model(tiny_checkpoint, rng):
    path, params = tiny_checkpoint
    x = images(rng, 4)
    theirs = flax_logits(params, x)
    assert np.abs(theirs).max() > 0.1  # a non-trivial head, so a difference would show
    np.testing.assert_allclose(keras_logits(path, x), theirs, atol=1e-4, rtol=0)


def test_the_bound_catches_an_exact_erf_gelu(tiny_checkpoint, rng):
    """The authors' GELU is the tanh form. With the exact erf form patched into
    the layers (the likeliest slip: PyTorch's and keras.activations.gelu's
    default) this checkpoint's logits move by ~2e-4, so the 1e-4 bound above
    tells the two apart."""
    path, params = tiny_checkpoint
    x = images(rng, 4)
    erf = lambda v, form: keras.ops.gelu(v, approximate=False)  # noqa: E731
    with mock.patch.object(keras_mixer.layers, "gelu", erf):
        ours = keras_logits(path, x)
    assert np.abs(ours - flax_logits(params, x)).max() > 1e-4
