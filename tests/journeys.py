"""What the journey tests (tests/test_journey_*.py) share: images as users
have them, a random S/32 in the authors' bucket layout, and runs of a saved
model in a fresh Python process."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import reference
from PIL import Image

S32 = dict(num_blocks=8, patch_size=32, hidden=512, d_s=256, d_c=2048, tokens=49)


def photo(path, rng, size=(300, 260)):
    """A random RGB PNG of `size` (W, H), lossless: every decoder reads the same pixels."""
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def s32_bucket(root, rng, classes=1000):
    """A directory laid out like the authors' bucket with a random S/32 GSAM file."""
    params = reference.random_checkpoint(rng, S32["num_blocks"], 32, S32["hidden"], S32["d_s"],
                                         S32["d_c"], tokens=S32["tokens"], classes=classes)
    (root / "gsam").mkdir(parents=True)
    np.savez(root / "gsam" / "Mixer-S_32.npz", **params)
    return root, params


def predict_in_new_process(imports, model_path, images, tmp_path):
    """`model_path` loaded with keras.saving.load_model in a fresh interpreter
    after `imports` (e.g. "import keras_mixer, keras"); returns its predictions."""
    x, out = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, images)
    code = textwrap.dedent(f"""
        {imports}
        import numpy as np
        model = keras.saving.load_model({str(model_path)!r})
        np.save({str(out)!r}, model.predict(np.load({str(x)!r}), verbose=0))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)
