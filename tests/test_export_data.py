"""Representative / held-out image sources over the training data specs:
default, folder:PATH (class folders with the training hold-out, or a flat
folder), tfds:NAME[/SPLIT] with a data dir; errors name the export argument."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_mixer.export import metadata
from keras_mixer.export.data import load_images
from keras_mixer.export.tflite import export_tflite
from keras_mixer import cli
from keras_mixer.model import Mixer

TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)


def _write_png(path, value, shape=(40, 30)):
    path.write_bytes(tf.io.encode_png(np.full((*shape, 3), value, np.uint8)).numpy())


@pytest.fixture
def class_folder(tmp_path):
    """PATH/<cat|dog>/*.png: 16 flat-coloured 40x30 images (not the model's size).

    Each image's colour names it (cat i: 5 + 10 i, dog i: 130 + 10 i), and a
    flat image stays flat through the eval transform, so a test can tell which
    file every returned image came from and check its label."""
    for label, base in (("cat", 5), ("dog", 130)):
        (tmp_path / label).mkdir()
        for i in range(8):
            _write_png(tmp_path / label / f"{i}.png", base + 10 * i)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def _colours(images):
    assert (images == images[:, :1, :1, :1]).all()  # still flat
    return images[:, 0, 0, 0].tolist()


def test_default_is_the_embedded_digits():
    x, y, names = load_images("default", (16, 16), count=50, split="test")
    assert x.shape == (50, 16, 16, 3) and x.dtype == np.uint8
    assert names == list("0123456789") and set(y) <= set(range(10))
    wide, _, _ = load_images("default", (16, 24), count=5)
    assert wide.shape == (5, 16, 24, 3)


def test_folder_of_class_folders_uses_the_training_holdout(class_folder, capsys):
    train, y_train, names = load_images(f"folder:{class_folder}", (16, 16), count=100)
    assert "notes.txt" in capsys.readouterr().err  # reported and skipped
    test, y_test, _ = load_images(f"folder:{class_folder}", (16, 16), count=100, split="test")
    assert names == ["cat", "dog"] and (len(train), len(test)) == (14, 2)  # 10% hold-out
    colours = _colours(train) + _colours(test)
    assert sorted(colours) == [5 + 10 * i for i in range(8)] + [130 + 10 * i for i in range(8)]
    assert (y_train.tolist() + y_test.tolist()) == [int(c >= 128) for c in colours]
    few, few_labels, _ = load_images(f"folder:{class_folder}", (16, 16), count=5)
    assert len(few) == len(few_labels) == 5 and set(_colours(few)) < set(_colours(train))
    again, _, _ = load_images(f"folder:{class_folder}", (16, 16), count=5)
    assert np.array_equal(few, again)  # a seeded subset


def test_folder_with_train_and_test_subfolders(tmp_path):
    for split, base in (("train", 10), ("test", 200)):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            _write_png(tmp_path / split / label / "0.png", base + (label == "b"))
    x, y, names = load_images(f"folder:{tmp_path}", (16, 16), count=10, split="test")
    assert _colours(x) == [200, 201] and y.tolist() == [0, 1] and names == ["a", "b"]


def test_flat_folder_is_unlabeled(tmp_path):
    for i in range(3):
        _write_png(tmp_path / f"{i}.png", 50 * i)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    x, y, names = load_images(f"folder:{tmp_path}", (16, 16), count=10)
    assert _colours(x) == [0, 50, 100] and y is None and names is None


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


class FlatShades(tfds.core.GeneratorBasedBuilder):
    """2 classes of flat grey images, built offline: train 20..29, test 200..203."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"),
                                     features=tfds.features.FeaturesDict({
                                         "image": tfds.features.Image(shape=(20, 24, 3)),
                                         "label": tfds.features.ClassLabel(names=["even", "odd"]),
                                     }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(20, 30)),
                "test": self._generate_examples(range(200, 204))}

    def _generate_examples(self, values):
        for v in values:
            yield v, {"image": np.full((20, 24, 3), v, np.uint8), "label": v % 2}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    FlatShades(data_dir=path).download_and_prepare()  # generated here, no download
    return path


def test_tfds_splits_from_a_data_dir(tfds_dir):
    source = "tfds:flat_shades"
    x, y, names = load_images(source, (16, 16), count=100, data_dir=tfds_dir)
    assert sorted(_colours(x)) == list(range(20, 30)) and names == ["even", "odd"]
    assert y.tolist() == [c % 2 for c in _colours(x)]
    x, _, _ = load_images(source, (16, 16), count=100, split="test", data_dir=tfds_dir)
    assert sorted(_colours(x)) == [200, 201, 202, 203]
    # NAME/SPLIT picks the split whatever the use; count takes a subset of it.
    x, _, _ = load_images(source + "/test", (16, 16), count=3, split="train", data_dir=tfds_dir)
    assert len(x) == 3 and set(_colours(x)) < {200, 201, 202, 203}
    with pytest.raises(ValueError, match=r"images: tfds dataset 'flat_shades' has no split 'dev'"):
        load_images(source + "/dev", (16, 16), count=3, data_dir=tfds_dir, arg="images")


def test_cli_data_dir_for_calibration_and_verification(tmp_path, tfds_dir, capsys):
    keras.utils.set_random_seed(0)
    path = str(tmp_path / "m.keras")
    Mixer(TINY, input_shape=(16, 16, 3), classes=2).save(path)
    out = str(tmp_path / "m.tflite")
    source = ["tfds:flat_shades", "--data-dir", tfds_dir]
    assert cli.main(["export", "tflite", path, "-o", out, "--quantize", "int8",
                     "--num-samples", "10", "--representative", *source]) == 0
    capsys.readouterr()
    assert cli.main(["export", "verify", out, path, "--images", *source]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 4 and report["keras_accuracy"] is not None  # the 4 test images
    assert cli.main(["export", "verify", out, path, "--images", "folder:/no/such/dir"]) == 2
    assert "images: no such folder: '/no/such/dir'" in capsys.readouterr().err


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"representative: expected one of .*got 'mnist'"):
        load_images("mnist", (16, 16), count=10)
    with pytest.raises(ValueError, match=r"images: expected one of .*got 'mnist'"):
        load_images("mnist", (16, 16), count=10, arg="images")
    with pytest.raises(FileNotFoundError, match=r"representative: no such folder"):
        load_images(f"folder:{tmp_path / 'missing'}", (16, 16), count=10)
    with pytest.raises(ValueError, match=r"representative: no readable images in"):
        load_images(f"folder:{tmp_path}", (16, 16), count=10)
    with pytest.raises(ValueError, match=r"representative: unknown tfds dataset 'no_such_set'"):
        load_images("tfds:no_such_set", (16, 16), count=10)
    with pytest.raises(ValueError, match=r"data_dir: only used with a tfds:NAME dataset; got dataset 'default'"):
        load_images("default", (16, 16), count=10, data_dir=str(tmp_path))
    (tmp_path / "only").mkdir()
    _write_png(tmp_path / "only" / "0.png", 0)
    with pytest.raises(ValueError, match=r"representative: folder .* has 1 class \('only'\)"):
        load_images(f"folder:{tmp_path}", (16, 16), count=10)
