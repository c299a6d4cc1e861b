"""Representative / held-out image sources: default, folder:PATH, tfds:NAME."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from export import metadata
from export.data import load_images
from export.tflite import export_tflite
from keras_mixer.model import Mixer

TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)


@pytest.fixture
def class_folder(tmp_path, rng):
    """PATH/<cat|dog>/*.png: 12 images of 40x30 pixels (not the model's size)."""
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(6):
            image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
            (tmp_path / label / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_default_is_the_embedded_digits():
    x, y, names = load_images("default", (16, 16), 50, split="test")
    assert x.shape == (50, 16, 16, 3) and x.dtype == np.uint8
    assert names == list("0123456789") and set(y) <= set(range(10))
    wide, _, _ = load_images("default", (16, 24), 5)
    assert wide.shape == (5, 16, 24, 3)


def test_folder_of_class_folders(class_folder):
    x, y, names = load_images(f"folder:{class_folder}", (16, 16), 100)
    assert x.shape == (12, 16, 16, 3) and names == ["cat", "dog"]
    assert y.tolist() == [0] * 6 + [1] * 6
    few, few_labels, _ = load_images(f"folder:{class_folder}", (16, 16), 5)
    assert len(few) == len(few_labels) == 5


def test_int8_calibrated_on_a_folder(tmp_path, class_folder):
    keras.utils.set_random_seed(0)
    model = Mixer(TINY, input_shape=(16, 16, 3), classes=2)
    out = str(tmp_path / "m.tflite")
    export_tflite(model, out, quantize="int8", representative=f"folder:{class_folder}",
                  labels=str(_labels_file(tmp_path)))
    contract = metadata.read_contract(out)
    assert contract["quantize"] == "int8" and contract["labels"] == ["cat", "dog"]


def _labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n")
    return path


def test_tfds_source_reads_a_prepared_dataset():
    with tfds.testing.mock_data(num_examples=12):
        x, y, names = load_images("tfds:mnist/test", (16, 16), 10)
    assert x.shape == (10, 16, 16, 3) and len(y) == 10 and names == list("0123456789")


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"representative: expected one of .*got 'mnist'"):
        load_images("mnist", (16, 16), 10)
    with pytest.raises(FileNotFoundError, match=r"representative: no such folder"):
        load_images(f"folder:{tmp_path / 'missing'}", (16, 16), 10)
    with pytest.raises(ValueError, match=r"representative: no .* images in"):
        load_images(f"folder:{tmp_path}", (16, 16), 10)
    with pytest.raises(ValueError, match=r"representative: unknown tfds dataset 'no_such_set'"):
        load_images("tfds:no_such_set", (16, 16), 10)
