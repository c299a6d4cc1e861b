"""Representative / held-out image sources over the training data specs:
default, folder:PATH (class folders with the training hold-out, or a flat
folder), tfds:NAME[/SPLIT] with a data dir; errors name the export argument."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from helpers import key_parts, tiny_keras_file, tiny_mixer, tiny_params, write_checkpoint

from keras_mixer.export import metadata
from keras_mixer.export.data import load_images
from keras_mixer.export.tflite import export_tflite
from keras_mixer.export.verify import LiteModel
from keras_mixer import cli


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
    source = f"folder:{class_folder}"
    out = str(tmp_path / "m.tflite")
    export_tflite(tiny_mixer(classes=2), out, quantize="int8", representative=source,
                  labels=str(_labels_file(tmp_path)))
    contract = metadata.read_contract(out)
    assert contract["quantize"] == "int8" and contract["labels"] == ["cat", "dog"]
    # The folder's training images set the input's int8 range [0, brightest pixel]
    # (255 for the default digits): the calibration really read this folder.
    train, _, _ = load_images(source, (16, 16), count=200)
    interpreter = LiteModel(out).interpreter
    first = interpreter._get_ops_details()[0]
    assert first["op_name"] == "QUANTIZE"
    scale, zero_point = interpreter.get_tensor_details()[first["outputs"][0]]["quantization"]
    assert train.max() < 255 and zero_point == -128
    assert scale == pytest.approx(train.max() / 255, rel=1e-6)


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
    with pytest.raises(ValueError, match=key_parts("images:", "'flat_shades'", "'dev'")):
        load_images(source + "/dev", (16, 16), count=3, data_dir=tfds_dir, arg="images")


def test_cli_data_dir_for_calibration_and_verification(tmp_path, tfds_dir, rng, capsys):
    # Random checkpoint weights: the head is not zero, so accuracy depends on the images.
    two_classes = write_checkpoint(tmp_path / "two.npz", tiny_params(rng, classes=2))
    path, model = tiny_keras_file(tmp_path / "m.keras", two_classes)
    out = str(tmp_path / "m.tflite")
    source = ["tfds:flat_shades", "--data-dir", tfds_dir]
    assert cli.main(["export", "tflite", path, "-o", out, "--quantize", "int8",
                     "--num-samples", "10", "--representative", *source]) == 0
    capsys.readouterr()
    assert cli.main(["export", "verify", out, path, "--images", *source]) == 0
    report = json.loads(capsys.readouterr().out)
    x, y, _ = load_images("tfds:flat_shades", (16, 16), count=100, split="test", data_dir=tfds_dir)
    assert report["images"] == len(x) == 4  # the test split, 200..203
    assert report["keras_accuracy"] == pytest.approx(np.mean(model.predict(x, verbose=0).argmax(-1) == y))
    assert cli.main(["export", "verify", out, path, "--images", "folder:/no/such/dir"]) == 2
    err = capsys.readouterr().err
    assert "images:" in err and "'/no/such/dir'" in err


def test_bad_sources_are_named(tmp_path):
    allowed = "['default', 'tfds:NAME', 'folder:PATH']"
    with pytest.raises(ValueError, match=key_parts("representative:", allowed, "'mnist'")):
        load_images("mnist", (16, 16), count=10)
    with pytest.raises(ValueError, match=key_parts("images:", allowed, "'mnist'")):
        load_images("mnist", (16, 16), count=10, arg="images")
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=key_parts("representative:", repr(missing))):
        load_images(f"folder:{missing}", (16, 16), count=10)
    with pytest.raises(ValueError, match=key_parts("representative:", "no readable images", repr(str(tmp_path)))):
        load_images(f"folder:{tmp_path}", (16, 16), count=10)
    with pytest.raises(ValueError, match=key_parts("representative:", "'no_such_set'")):
        load_images("tfds:no_such_set", (16, 16), count=10)
    with pytest.raises(ValueError, match=key_parts("data_dir:", "tfds:NAME", "'default'")):
        load_images("default", (16, 16), count=10, data_dir=str(tmp_path))
    (tmp_path / "only").mkdir()
    _write_png(tmp_path / "only" / "0.png", 0)
    with pytest.raises(ValueError, match=key_parts("representative:", "1 class", "('only')")):
        load_images(f"folder:{tmp_path}", (16, 16), count=10)
