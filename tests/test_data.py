"""Dataset specs and tf.data pipelines: embedded digits, tfds from a local
data dir (a dataset built here with tfds' own machinery), folders with a
corrupt file, and the errors for bad specs and folders."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_mixer import datasets
from keras_mixer.training import data
from keras_mixer.training.recipes import get_recipe


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 3-class image dataset generated offline: 30 train, 12 test images."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(20, 24, 3)),
                "label": tfds.features.ClassLabel(names=["red", "green", "blue"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30, 0), "test": self._generate_examples(12, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for i in range(count):
            image = rng.integers(0, 60, (20, 24, 3), dtype=np.uint8)
            image[..., i % 3] += 150  # the label is the dominant colour
            yield i, {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=str(path)).download_and_prepare()  # no download: generated here
    return str(path)


def write_folder(root, classes, per_class=4, size=(12, 10)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_tfds_from_local_data_dir(tfds_dir):
    source = datasets.load_source("tfds:tiny_shapes", data_dir=tfds_dir, image_size=16)
    assert (source.num_classes, source.class_names) == (3, ["red", "green", "blue"])
    assert (source.num_train, source.num_test) == (30, 12)
    recipe = get_recipe("finetune", {"image_size": 16})
    images, labels = next(iter(data.train_pipeline(source, recipe, global_batch=8)))
    assert images.shape == (8, 16, 16, 3) and labels.shape == (8, 3)
    test = list(data.eval_pipeline(source, 16, batch=5))
    assert sum(len(x) for x, _ in test) == 12
    # The eval transform keeps the colour that defines the label.
    x, y = test[0]
    assert np.array_equal(np.argmax(x.numpy().mean(axis=(1, 2)), -1), np.argmax(y, -1))


def test_tfds_holdout_slices_train(tfds_dir):
    source = datasets.load_source("tfds:tiny_shapes", data_dir=tfds_dir, holdout=0.2)
    assert (source.num_train, source.num_test) == (24, 6)


def test_tfds_unknown_and_unprepared(tmp_path):
    with pytest.raises(ValueError, match="dataset: unknown tfds dataset 'no_such_dataset_xyz'"):
        datasets.load_source("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'mnist' is not prepared in"):
        datasets.load_source("tfds:mnist", data_dir=str(tmp_path))


def test_folder_with_corrupt_files_reports_and_skips(tmp_path, capsys):
    root = write_folder(tmp_path / "pets", ["cat", "dog"], per_class=10)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dog" / "notes.txt").write_text("not an image")
    source = datasets.load_source(f"folder:{root}")
    assert sorted(p.rsplit("/", 1)[-1] for p in source.skipped) == ["broken.jpg", "notes.txt"]
    assert "broken.jpg" in capsys.readouterr().err
    assert source.class_names == ["cat", "dog"]
    assert source.num_train + source.num_test == 20 and source.num_test == 2  # 10% hold-out
    recipe = get_recipe("finetune", {"image_size": 8})
    seen = sum(len(x) for x, _ in data.train_pipeline(source, recipe, global_batch=3))
    assert seen == 18  # every readable training image, nothing crashed
    assert sum(len(x) for x, _ in data.eval_pipeline(source, 8, batch=4)) == 2


def test_folder_train_test_subfolders(tmp_path):
    write_folder(tmp_path / "d" / "train", ["a", "b", "c"], per_class=3)
    write_folder(tmp_path / "d" / "val", ["a", "b", "c"], per_class=1)
    source = datasets.load_source(f"folder:{tmp_path / 'd'}")
    assert (source.num_classes, source.num_train, source.num_test) == (3, 9, 3)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="dataset: folder .*empty' has no class sub-folders"):
        datasets.load_source(f"folder:{tmp_path / 'empty'}")
    write_folder(tmp_path / "one", ["only"])
    with pytest.raises(ValueError, match="has 1 class \\('only'\\); expected at least 2"):
        datasets.load_source(f"folder:{tmp_path / 'one'}")
    with pytest.raises(FileNotFoundError, match="dataset: no such folder"):
        datasets.load_source(f"folder:{tmp_path / 'missing'}")


@pytest.mark.parametrize("spec", ["imagenet", "hf:cifar10", "tfds:", "folder:", None])
def test_unknown_spec(spec):
    with pytest.raises(ValueError, match="dataset: expected"):
        datasets.check_spec(spec)


def test_data_dir_only_with_tfds():
    with pytest.raises(ValueError, match="data_dir: only used with a tfds:NAME dataset"):
        datasets.check_spec("default", data_dir="/tmp")


def test_default_digits_and_augmentation():
    source = datasets.load_source("default", image_size=16)
    assert (source.num_train, source.num_test, source.num_classes) == (1437, 360, 10)
    recipe = get_recipe("pretrain", {"image_size": 16})  # RandAugment + mixup on
    images, labels = next(iter(data.train_pipeline(source, recipe, global_batch=32)))
    assert images.shape == (32, 16, 16, 3)
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    np.testing.assert_allclose(tf.reduce_sum(labels, -1), 1.0, atol=1e-5)
    assert np.mean(np.max(labels, -1) < 0.99) > 0.25  # mixup made soft labels
    holdout = datasets.load_source("default", image_size=16, holdout=0.1)
    assert (holdout.num_train, holdout.num_test) == (1293, 144)


def test_folder_refuses_a_class_without_images(tmp_path):
    # Issue 14.8: an empty `birds/` got a head output that is never trained.
    root = write_folder(tmp_path / "pets", ["cat", "dog"], per_class=5)
    (root / "birds").mkdir()
    with pytest.raises(ValueError, match="pets' has class sub-folders without readable images: "
                                         "'birds'; expected at least one image per class"):
        datasets.load_source(f"folder:{root}")
    # Unreadable files only count as no images, and say so.
    (root / "birds" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="without readable images: 'birds'"):
        datasets.load_source(f"folder:{root}")


def test_folder_ignores_links_back_to_the_root(tmp_path, capsys):
    # Issue 14.8: a symlink to the root was taken as a class `again` holding every image.
    root = write_folder(tmp_path / "pets", ["cat", "dog"], per_class=5)
    (root / "again").symlink_to(root, target_is_directory=True)
    (root / "up").symlink_to(tmp_path, target_is_directory=True)
    source = datasets.load_source(f"folder:{root}")
    assert source.class_names == ["cat", "dog"]
    assert source.num_train + source.num_test == 10
    err = capsys.readouterr().err
    assert "ignored" in err and "again" in err and "up" in err
    # A link to a folder elsewhere is an ordinary class.
    write_folder(tmp_path / "elsewhere", ["bird"], per_class=2)
    (root / "bird").symlink_to(tmp_path / "elsewhere" / "bird", target_is_directory=True)
    assert datasets.load_source(f"folder:{root}").class_names == ["bird", "cat", "dog"]
