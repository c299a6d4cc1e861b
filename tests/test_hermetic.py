"""The test run is hermetic (conftest.py): HOME and every cache point into this
run's own temporary directory, in this process and in the ones it starts."""

import os
import subprocess
import sys

import conftest


def test_home_and_every_cache_are_this_runs_own():
    for var, path in conftest.HERMETIC_ENV.items():
        assert os.environ[var] == path and path.startswith(conftest.SANDBOX), var
    assert os.path.expanduser("~") == conftest.SANDBOX
    assert "KERAS_MIXER_WEIGHTS_URL" not in os.environ


def test_keras_and_huggingface_caches_resolve_into_the_sandbox():
    code = ("import keras, huggingface_hub.constants as c; "
            "from keras.src.backend.config import keras_home; "
            "from keras_mixer.weights import download; "
            "print(keras_home()); print(c.HF_HUB_CACHE); print(download.cache_directory(None, 'x'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=True).stdout
    paths = out.split()
    assert len(paths) == 3 and all(p.startswith(conftest.SANDBOX) for p in paths), paths
