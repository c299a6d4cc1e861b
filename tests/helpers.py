"""What many tests share: the tiny Mixer configs and builders, random images,
checkpoint files, and error messages matched by their key parts.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path).
"""

import re

import numpy as np

import keras_mixer  # names load lazily: importing this starts no Keras
import reference

# A Mixer small enough for seconds-long tests: 16x16 images, 4x4 patches, 16 tokens.
TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
TINY_SIZE = 16
TINY_TOKENS = (TINY_SIZE // TINY["patch_size"]) ** 2
# The export tests' trained model: TINY twice as wide, which learns the embedded
# digits at TINY_SIZE (about 98% test top-1 after 10 epochs) in seconds on 2 cores.
SMALL = dict(TINY, hidden_dim=32, tokens_mlp_dim=16, channels_mlp_dim=64)


def images(rng, n, size=TINY_SIZE):
    """`n` random RGB images with values 0-255, float32 (n, size, size, 3)."""
    return rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def write_checkpoint(path, params):
    """Writes params the way the authors' files are: a flat np.savez archive."""
    np.savez(path, **params)
    return str(path)


def tiny_params(rng, classes=7):
    """Random TINY parameters in the authors' key layout."""
    return reference.random_checkpoint(
        rng, TINY["num_blocks"], TINY["patch_size"], TINY["hidden_dim"],
        TINY["tokens_mlp_dim"], TINY["channels_mlp_dim"], tokens=TINY_TOKENS, classes=classes)


def tiny_mixer(weights=None, *, size=TINY_SIZE, config=TINY, **kwargs):
    """A Mixer of `config` for size x size images (size: an int or (H, W)).

    Random init has a zero head (every output equal, whatever the input): a test
    that compares outputs wants `weights`, e.g. the `tiny_checkpoint` fixture's.
    """
    height, width = (size, size) if isinstance(size, int) else size
    return keras_mixer.Mixer(config, weights=weights, input_shape=(height, width, 3), **kwargs)


def tiny_keras_file(path, weights=None, **kwargs):
    """Saves tiny_mixer(weights, **kwargs) as the .keras file `path`: (str path, model)."""
    model = tiny_mixer(weights, **kwargs)
    model.save(path)
    return str(path), model


def key_parts(*parts):
    """A `pytest.raises(match=...)` pattern: the literal parts in this order with
    anything between, so a test pins the argument, the value and what is allowed,
    and the prose around them may change."""
    return "(?s)" + ".*".join(re.escape(part) for part in parts)
