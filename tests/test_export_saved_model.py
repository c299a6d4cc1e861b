"""SavedModel export: TF Serving layout, serving signatures, a reload in a fresh
process that never imports keras_mixer, saved_model_cli, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import SMALL
from helpers import TINY_SIZE as SIZE
from helpers import key_parts, tiny_mixer

from keras_mixer import cli, inference
from keras_mixer.export.saved_model import export_saved_model, warm_up
from keras_mixer.preprocessing import eval_resize_crop

# Runs in a fresh interpreter: loads the SavedModel with plain TensorFlow and
# prints the three signatures' outputs as JSON.
RELOAD = """
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2])
encoded = [bytes.fromhex(h) for h in open(sys.argv[3]).read().split()]
out = loaded.signatures["serve_bytes"](image_bytes=tf.constant(encoded))
floats = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
uint8 = loaded.signatures["serve_uint8"](images=tf.constant(data["images"].astype(np.uint8)))
print(json.dumps({
    "keras_mixer_imported": "keras_mixer" in sys.modules,
    "labels": out["labels"].numpy().astype(str).tolist(),
    "classes": out["classes"].numpy().tolist(),
    "scores": out["scores"].numpy().tolist(),
    "float": floats["probabilities"].numpy().tolist(),
    "uint8": uint8["probabilities"].numpy().tolist(),
}))
"""


@pytest.fixture(scope="module")
def trained(digits_mixer):
    """The Mixer trained on the digits, and 24 test digits as PNG/JPEG bytes."""
    x_test = digits_mixer.x_test[:24]
    # Encoded at twice the size, so the in-graph resize and crop do real work.
    big = tf.image.resize(x_test, (2 * SIZE, 2 * SIZE)).numpy().round().astype(np.uint8)
    encoded = [tf.io.encode_png(x).numpy() for x in big[:12]]
    encoded += [tf.io.encode_jpeg(x, quality=95).numpy() for x in big[12:]]
    return digits_mixer.model, x_test, encoded


def test_reload_in_fresh_process_matches_keras(tmp_path, trained):
    model, images, encoded = trained
    path = export_saved_model(model, str(tmp_path / "digits"), xla=True, top_k=3, labels="digits")
    assert path == str(tmp_path / "digits" / "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    np.savez(tmp_path / "data.npz", images=images.astype(np.float32))
    (tmp_path / "encoded.txt").write_text(" ".join(e.hex() for e in encoded))
    run = subprocess.run(
        [sys.executable, "-c", RELOAD, path, str(tmp_path / "data.npz"), str(tmp_path / "encoded.txt")],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["keras_mixer_imported"] is False

    decoded = [tf.io.decode_image(e, channels=3) for e in encoded]
    keras_top = model.predict(np.stack([eval_resize_crop(d, (SIZE, SIZE)) for d in decoded]),
                              verbose=0)
    assert [row[0] for row in out["classes"]] == keras_top.argmax(-1).tolist()
    assert [row[0] for row in out["labels"]] == [str(c) for c in keras_top.argmax(-1)]
    np.testing.assert_allclose(np.asarray(out["scores"])[:, 0], keras_top.max(-1), atol=1e-4)
    expected = model.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(out["float"], expected, atol=1e-5)
    np.testing.assert_allclose(out["uint8"], expected, atol=1e-5)


def test_non_xla_export_serves_probabilities_for_a_logits_model(tmp_path, trained):
    model, images, _ = trained
    # The trained model's weights with a logits head: softmax must be added in the graph.
    logits = tiny_mixer(config=SMALL, classes=10, classifier_activation=None)
    logits.set_weights(model.get_weights())
    path = export_saved_model(logits, str(tmp_path / "m"), version=3)
    assert path == str(tmp_path / "m" / "3")
    loaded = tf.saved_model.load(path)
    warm_up(loaded, batch_sizes=(1, 4))
    probs = loaded.signatures["serving_default"](images=tf.constant(images[:4], tf.float32))
    expected = tf.nn.softmax(logits.predict(images[:4].astype(np.float32), verbose=0)).numpy()
    assert np.ptp(expected, axis=0).max() > 0.1  # the images get different answers
    np.testing.assert_allclose(probs["probabilities"].numpy(), expected, atol=1e-5)


def test_saved_model_cli_reads_the_signatures(tmp_path, trained, monkeypatch, capsys):
    model, _, _ = trained
    with monkeypatch.context() as patch:
        # Refused before the B/16 is built: building it would fail the test.
        patch.setattr(inference, "load_model", _must_not_be_called)
        assert cli.main(["export", "saved-model", "B/16", "-o", str(tmp_path / "x"),
                         "--weights", "none", "--top-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "top_k:" in err and "got 0" in err
    path = export_saved_model(model, str(tmp_path / "srv"))
    tool = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    run = subprocess.run([tool, "show", "--dir", path, "--tag_set", "serve"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("serving_default", "serve_uint8", "serve_bytes"):
        assert f'SignatureDef key: "{name}"' in run.stdout


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("the model was loaded before the arguments were checked")


def test_bad_input_is_refused(tmp_path, trained):
    model, _, _ = trained
    (tmp_path / "srv" / "1").mkdir(parents=True)
    (tmp_path / "srv" / "1" / "old.txt").write_text("an older version")
    with pytest.raises(FileExistsError, match=key_parts("output:", repr(str(tmp_path / "srv" / "1")), "--overwrite")):
        export_saved_model(model, str(tmp_path / "srv"))
    path = export_saved_model(model, str(tmp_path / "srv"), overwrite=True)
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert not os.path.exists(os.path.join(path, "old.txt"))  # replaced, not merged
    with pytest.raises(ValueError, match=key_parts("version:", ">= 1", "got 0")):
        export_saved_model(model, str(tmp_path / "a"), version=0)
    with pytest.raises(ValueError, match=key_parts("top_k:", "[1, 10]", "11")):
        export_saved_model(model, str(tmp_path / "a"), top_k=11)
    with pytest.raises(ValueError, match=key_parts("output:", "directory", repr(str(tmp_path / "a.tflite")))):
        export_saved_model(model, str(tmp_path / "a.tflite"))
    with pytest.raises(FileNotFoundError, match=key_parts("model:", repr(str(tmp_path / "none.keras")))):
        export_saved_model(str(tmp_path / "none.keras"), str(tmp_path / "a"))
    assert not os.path.exists(tmp_path / "a")
