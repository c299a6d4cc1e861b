"""keras.applications conventions, adapted from Keras' own applications_test.py.

The same checks Keras runs on its applications (variable input channels,
custom input shape and tensor, pooling, classifier activation, pretrained
weights + decode_predictions + serialization), with what a Mixer inherently
does differently made explicit: its token count is fixed by the image size, so
an input of (None, None) raises a clear ValueError; it is channels_last only.
The whole file runs again on the JAX backend (last test).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_mixer
import reference
from keras_mixer.labels import imagenet_labels

# builder, its feature width (last dim of include_top=False outputs), its patch
MODELS = [(keras_mixer.MixerS32, 512, 32), (keras_mixer.MixerS16, 512, 16)]
IDS = ["S32", "S16"]


@pytest.fixture
def channels_first():
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format("channels_last")


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
@pytest.mark.parametrize("channels", [1, 4])
def test_notop_input_channels(app, last_dim, patch, channels):
    model = app(weights=None, include_top=False, input_shape=(224, 224, channels))
    assert list(model.outputs[0].shape) == [None, 224 // patch, 224 // patch, last_dim]


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
def test_variable_size_is_refused_clearly(app, last_dim, patch):
    with pytest.raises(ValueError, match=r"input_shape: .*got \(None, None, 1\).*cannot be None"):
        app(weights=None, include_top=False, input_shape=(None, None, 1))


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
def test_notop_custom_input_shape_pads_like_the_authors(app, last_dim, patch):
    model = app(weights=None, include_top=False, input_shape=(123, 123, 3))
    side = -(-123 // patch)  # "SAME": a partly filled last row/column of patches
    assert list(model.outputs[0].shape) == [None, side, side, last_dim]
    assert model.get_layer("stem").padding == "same"


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
def test_notop_custom_input_tensor(app, last_dim, patch):
    inputs = keras.Input(shape=(200, 200, 4), name="custom_input")
    x = keras.layers.Conv2D(3, (2, 2), padding="valid", strides=(2, 2))(inputs)
    model = app(weights=None, include_top=False, input_tensor=x)
    assert model.outputs[0].shape[-1] == last_dim
    assert model.inputs[0] is inputs  # the model starts at the tensor's source
    out = model(np.zeros((1, 200, 200, 4), "float32"))
    assert tuple(out.shape) == (1, -(-100 // patch), -(-100 // patch), last_dim)


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooling(app, last_dim, patch, pooling):
    model = app(weights=None, include_top=False, pooling=pooling)
    assert list(model.outputs[0].shape) == [None, last_dim]


@pytest.mark.parametrize("app, last_dim, patch", MODELS, ids=IDS)
def test_classifier_activation(app, last_dim, patch):
    model = app(weights=None, include_top=True, classifier_activation="softmax")
    assert model.layers[-1].activation.__name__ == "softmax"


def test_channels_first_is_refused_clearly(channels_first):
    with pytest.raises(ValueError, match=r"image_data_format: .*'channels_last'.*got .*'channels_first'"):
        keras_mixer.MixerS32(weights=None)


def test_keras_argument_order():
    """include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, name: positionally, as keras.applications."""
    model = keras_mixer.MixerS32(False, None, None, (64, 64, 3), "avg", 10, None, "m")
    assert model.name == "m" and list(model.outputs[0].shape) == [None, 512]


@pytest.fixture(scope="module")
def s32_bucket(tmp_path_factory):
    """A local mirror of the authors' bucket holding a random S/32 "imagenet" file."""
    root = tmp_path_factory.mktemp("bucket")
    (root / "gsam").mkdir()
    params = reference.random_checkpoint(np.random.default_rng(0), 8, 32, 512, 256, 2048,
                                         tokens=49, classes=1000)
    np.savez(root / "gsam" / "Mixer-S_32.npz", **params)
    return root, params


def test_imagenet_weights_decode_and_serialize(s32_bucket, monkeypatch):
    root, params = s32_bucket
    monkeypatch.setenv("KERAS_MIXER_WEIGHTS_URL", str(root))
    model = keras_mixer.MixerS32(weights="imagenet")
    x = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    x = keras_mixer.preprocess_input(x)
    preds = model.predict(x, verbose=0)
    expected = reference.logits(x, params)[0]
    decoded = keras_mixer.decode_predictions(preds)[0]
    keras_names = imagenet_labels(1000)
    assert [d[1] for d in decoded] == [keras_names[i][1] for i in np.argsort(expected)[::-1][:5]]
    config = keras.saving.serialize_keras_object(model)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert len(rebuilt.weights) == len(model.weights)


@pytest.mark.parametrize("activation", ["softmax", None, "linear", keras.activations.softmax])
def test_pretrained_head_activations_accepted_like_keras(s32_bucket, monkeypatch, activation):
    monkeypatch.setenv("KERAS_MIXER_WEIGHTS_URL", str(s32_bucket[0]))
    model = keras_mixer.MixerS32(weights="imagenet", classifier_activation=activation)
    assert model.layers[-1].activation is keras.activations.get(activation)


def test_pretrained_head_activation_refused_by_value(s32_bucket, monkeypatch):
    monkeypatch.setenv("KERAS_MIXER_WEIGHTS_URL", str(s32_bucket[0]))
    with pytest.raises(ValueError, match=r"classifier_activation: .*got 'sigmoid'"):
        keras_mixer.MixerS32(weights="imagenet", classifier_activation="sigmoid")


@pytest.mark.large  # a minute of the default run; `python -m pytest -m large`
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="this is the JAX run")
def test_same_conventions_on_jax():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    # S/32 stands for both variants there, to keep the run short.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-k", "not S16", __file__], env=env, capture_output=True, text=True, timeout=900,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
