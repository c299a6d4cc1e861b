"""Installing keras-mixer as users do: beside their own packages, without TensorFlow.

One fresh virtual environment (no system packages) that already holds other
in-range versions of numpy and pillow; `pip install ".[jax]"` (a wheel build,
ranges only, no constraints) must keep them. Then, with no TensorFlow in the
environment, the model core downloads a B/16 checkpoint from a `file://`
mirror, predicts on the JAX backend and matches the NumPy reference.
Needs the package index (CI has it); takes a minute or two with a warm pip cache.
"""

import json
import os
import subprocess
import sys
import textwrap
import venv

import numpy as np
import pytest

import reference
from keras_mixer.labels import imagenet_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In range for setup.cfg, and older than constraints.txt's pins.
PREINSTALLED = {"numpy": "2.3.5", "pillow": "12.2.0"}

CHECK = textwrap.dedent("""
    import importlib.metadata as md, importlib.util, json, sys
    import numpy as np
    import keras, keras_mixer
    from keras_mixer.preprocessing import load_image
    import keras_mixer.export
    try:
        import export
        namespace = "import export worked"
    except ImportError:
        namespace = "ok"
    model = keras_mixer.MixerB16(weights="imagenet")  # from the file:// mirror
    image = load_image(sys.argv[1])
    probs = model.predict(image[None], verbose=0)
    print(json.dumps(dict(
        backend=keras.backend.backend(),
        tensorflow=importlib.util.find_spec("tensorflow") is not None,
        versions={p: md.version(p) for p in ("numpy", "pillow")},
        namespace=namespace, image=image.tolist(), logits=np.log(probs[0]).tolist(),
        top=keras_mixer.decode_predictions(probs, top=1)[0][0][0])))
""")


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.large  # a minute of the default run; `python -m pytest -m large`
def test_jax_install_keeps_user_packages_and_runs_without_tensorflow(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + [f"{name}=={version}" for name, version in PREINSTALLED.items()])
    _run(pip + [f"{ROOT}[jax]"], cwd=tmp_path)

    rng = np.random.default_rng(0)
    params = reference.random_checkpoint(rng, 12, 16, 768, 384, 3072, tokens=196, classes=1000)
    bucket = tmp_path / "bucket" / "imagenet1k"
    bucket.mkdir(parents=True)
    np.savez(bucket / "Mixer-B_16.npz", **params)
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS", "PYTHON"))}
    env.update(KERAS_BACKEND="jax", KERAS_HOME=str(tmp_path / "keras_home"),
               KERAS_MIXER_WEIGHTS_URL=(tmp_path / "bucket").as_uri())
    out = json.loads(_run([python, "-c", CHECK, str(tmp_path / "a.png")], cwd=tmp_path,
                          env=env).splitlines()[-1])

    assert out["backend"] == "jax" and out["tensorflow"] is False
    assert out["versions"] == PREINSTALLED  # nothing was upgraded or downgraded
    assert out["namespace"] == "ok"
    assert os.path.isfile(tmp_path / "keras_home" / "keras_mixer" / "imagenet1k_Mixer-B_16.npz")
    image = np.asarray(out["image"], np.float32)
    expected = reference.logits(image[None], params)[0]
    got = np.asarray(out["logits"])
    # log-softmax is logits up to a constant per image
    np.testing.assert_allclose(got - got[0], expected - expected[0], atol=1e-4)
    assert out["top"] == imagenet_labels(1000)[int(np.argmax(expected))][0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_export_folder_is_only_importable_as_keras_mixer_export():
    code = "import keras_mixer.export\ntry:\n import export\nexcept ImportError as e: print(e)"
    out = _run([sys.executable, "-c", code], cwd=ROOT)
    assert "keras_mixer.export" in out and "'export'" in out
