"""Shared fixtures. Importing this file (pytest does, before any test module)
makes the run hermetic: HOME and every cache keras-mixer or its libraries
touch point into one temporary directory of this run, so no test reads or
writes the user's ~, ~/.keras, the Hugging Face or TFDS caches, and a fresh
machine behaves as a used one does."""

import atexit
import os
import shutil
import tempfile
import types

# Before Keras, TensorFlow or huggingface_hub are imported: they read these once.
SANDBOX = tempfile.mkdtemp(prefix="keras-mixer-tests-")
HERMETIC_ENV = {
    "HOME": SANDBOX,
    "KERAS_HOME": os.path.join(SANDBOX, ".keras"),
    "HF_HOME": os.path.join(SANDBOX, ".cache", "huggingface"),
    "TFDS_DATA_DIR": os.path.join(SANDBOX, "tensorflow_datasets"),
    "XDG_CACHE_HOME": os.path.join(SANDBOX, ".cache"),
}
os.environ.update(HERMETIC_ENV)
os.environ.pop("KERAS_MIXER_WEIGHTS_URL", None)  # a user's mirror must not leak in
atexit.register(shutil.rmtree, SANDBOX, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import SMALL, TINY_SIZE, tiny_mixer, tiny_params, write_checkpoint  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_keras_state():
    """Frees each module's models, as Keras' own TestCase does between tests: one
    pytest process builds hundreds of them, up to B/16 and S/32 at full size."""
    yield
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_checkpoint(tmp_path, rng):
    """(path, params) of a random TINY checkpoint with a 7-class head."""
    params = tiny_params(rng)
    return write_checkpoint(tmp_path / "tiny.npz", params), params


@pytest.fixture(scope="session")
def digits_mixer(tmp_path_factory):
    """A SMALL Mixer trained on the embedded digits at TINY_SIZE, once per run.

    Fields: model, path (its .keras file), x_train, x_test (uint8), y_test.
    """
    import keras

    from keras_mixer.datasets import embedded_digits

    (x_train, y_train), (x_test, y_test) = embedded_digits(TINY_SIZE)
    keras.utils.set_random_seed(0)
    model = tiny_mixer(config=SMALL, classes=10)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x_train.astype("float32"), y_train, epochs=10, batch_size=64, verbose=0)
    path = str(tmp_path_factory.mktemp("digits") / "digits.keras")
    model.save(path)
    return types.SimpleNamespace(model=model, path=path, x_train=x_train, x_test=x_test,
                                 y_test=y_test)
