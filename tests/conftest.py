import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import reference  # noqa: E402  (the independent NumPy model)

# A Mixer small enough for seconds-long tests: 16x16 images, 4x4 patches, 16 tokens.
TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
TINY_SIZE = 16
TINY_TOKENS = (TINY_SIZE // TINY["patch_size"]) ** 2


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def write_checkpoint(path, params):
    """Writes params the way the authors' files are: a flat np.savez archive."""
    np.savez(path, **params)
    return str(path)


@pytest.fixture
def tiny_checkpoint(tmp_path, rng):
    """(path, params) of a random TINY checkpoint with a 7-class head."""
    params = reference.random_checkpoint(
        rng, TINY["num_blocks"], TINY["patch_size"], TINY["hidden_dim"],
        TINY["tokens_mlp_dim"], TINY["channels_mlp_dim"], tokens=TINY_TOKENS, classes=7,
    )
    return write_checkpoint(tmp_path / "tiny.npz", params), params


def images(rng, n, size=TINY_SIZE):
    return rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
