import numpy as np
import pytest

from helpers import tiny_params, write_checkpoint


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_checkpoint(tmp_path, rng):
    """(path, params) of a random TINY checkpoint with a 7-class head."""
    params = tiny_params(rng)
    return write_checkpoint(tmp_path / "tiny.npz", params), params
