"""What many tests share: the tiny Mixer config, random images, checkpoint files.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path).
"""

import numpy as np

import reference

# A Mixer small enough for seconds-long tests: 16x16 images, 4x4 patches, 16 tokens.
TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
TINY_SIZE = 16
TINY_TOKENS = (TINY_SIZE // TINY["patch_size"]) ** 2


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
