"""Datasets, named by a spec, shared by training, evaluation and export.

  default        the embedded digits: scikit-learn's 1,797 8x8 handwritten digits,
                 shipped inside its wheel, up-sampled to RGB 0-255; works offline
  tfds:NAME      a tensorflow-datasets dataset, from `data_dir` when given; nothing is
                 downloaded here: prepare it first where there is a network
  folder:PATH    class sub-folders of images, PATH/<class>/*.jpg; PATH/train and
                 PATH/test (or val, validation) when present, else a fixed 10% hold-out

`load_source` returns unbatched `tf.data` datasets of (image uint8, label).
TensorFlow (and scikit-learn, tensorflow-datasets) are imported only when a
dataset is read, so the model core stays importable without them.
"""

import dataclasses
import os
import sys

import numpy as np

SPECS = ("default", "tfds:NAME", "folder:PATH")
EVAL_FOLDERS = ("test", "val", "validation")
FOLDER_HOLDOUT = 0.1  # eval fraction of a folder without train/ and test/ sub-folders
DIGITS_CLASSES = 10
DIGITS_LABELS = tuple(str(d) for d in range(DIGITS_CLASSES))
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed, so every command sees the same test split


def embedded_digits(size=32):
    """((x_train, y_train), (x_test, y_test)): uint8 (N, size, size, 3), int32 labels.

    A fixed stratified split: 1,437 training and 360 test images.
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"size: expected an int >= 8; got {size!r}")
    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8, 1).astype(np.float32) * (255.0 / 16.0)
    images = tf.image.resize(images, (size, size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels.astype(np.int32), test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED, stratify=labels,
    )
    return (x_train, y_train), (x_test, y_test)


@dataclasses.dataclass
class Source:
    """Unbatched (image uint8 (H, W, 3), label int) datasets of one spec."""

    train: object  # tf.data.Dataset
    test: object
    num_classes: int
    class_names: list
    num_train: int
    num_test: int
    streamed: bool = False  # tfds: files on disk, shard by file; others by data
    skipped: list = dataclasses.field(default_factory=list)  # unreadable files


def check_spec(spec, data_dir=None):
    """Checks a dataset spec without loading anything."""
    if not isinstance(spec, str) or not (spec == "default" or spec.startswith(("tfds:", "folder:"))):
        raise ValueError(f"dataset: expected one of {list(SPECS)}; got {spec!r}")
    if spec in ("tfds:", "folder:"):
        raise ValueError(f"dataset: expected a name or path after the colon; got {spec!r}")
    if spec.startswith("folder:") and not os.path.isdir(spec[7:]):
        raise FileNotFoundError(f"dataset: no such folder: {spec[7:]!r}")
    if data_dir is not None and not spec.startswith("tfds:"):
        raise ValueError(f"data_dir: only used with a tfds:NAME dataset; got dataset {spec!r}")


def load_source(spec, data_dir=None, image_size=32, holdout=0.0, seed=0, eval_split=None):
    """A `Source` for `spec`. With `holdout` > 0 the test split is replaced by
    that fraction of the training split (for tuning without seeing the test set).
    `eval_split` names the tfds split to use as `test` (default: test, val or validation)."""
    check_spec(spec, data_dir)
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout: expected a fraction in [0, 1); got {holdout!r}")
    if eval_split is not None and (not spec.startswith("tfds:") or holdout):
        raise ValueError(f"eval_split: only used with a tfds:NAME dataset and no holdout; "
                         f"got dataset {spec!r}, holdout {holdout!r}")
    if spec == "default":
        return _digits(image_size, holdout, seed)
    if spec.startswith("folder:"):
        return _folder(spec[7:], holdout, seed)
    return _tfds(spec[5:], data_dir, holdout, eval_split)


def _from_arrays(x_train, y_train, x_test, y_test, holdout, seed):
    import tensorflow as tf

    if holdout:
        order = np.random.default_rng(seed).permutation(len(x_train))
        cut = int(len(order) * (1 - holdout))
        x_train, x_test = x_train[order[:cut]], x_train[order[cut:]]
        y_train, y_test = y_train[order[:cut]], y_train[order[cut:]]
    return (tf.data.Dataset.from_tensor_slices((x_train, y_train)),
            tf.data.Dataset.from_tensor_slices((x_test, y_test)), len(x_train), len(x_test))


def _digits(image_size, holdout, seed):
    (x_train, y_train), (x_test, y_test) = embedded_digits(image_size)
    train, test, n_train, n_test = _from_arrays(x_train, y_train, x_test, y_test, holdout, seed)
    return Source(train, test, len(DIGITS_LABELS), list(DIGITS_LABELS), n_train, n_test)


def _folder(path, holdout, seed):
    split_dirs = [d for d in EVAL_FOLDERS if os.path.isdir(os.path.join(path, d))]
    has_splits = os.path.isdir(os.path.join(path, "train")) and split_dirs
    train_root = os.path.join(path, "train") if has_splits else path
    classes = _class_folders(train_root)
    files, labels = _list_files(train_root, classes)
    if not files:
        raise ValueError(f"dataset: folder {train_root!r} has no class sub-folders with files; "
                         f"expected {train_root}/<class>/<image>")
    if len(classes) < 2:
        raise ValueError(f"dataset: folder {train_root!r} has {len(classes)} class ({classes[0]!r}); "
                         f"expected at least 2 class sub-folders")
    files, labels, bad = _readable(files, labels)
    # A class without images would get a head output that is never trained.
    empty = [c for i, c in enumerate(classes) if i not in set(labels)]
    if empty:
        raise ValueError(f"dataset: folder {train_root!r} has class sub-folders without readable "
                         f"images: {', '.join(map(repr, empty))}; expected at least one image per "
                         f"class (add images or move the folder out)")
    if has_splits and not holdout:
        test_files, test_labels, bad_test = _readable(
            *_list_files(os.path.join(path, split_dirs[0]), classes))
        bad += bad_test
    else:  # a fixed, seeded hold-out, so every run evaluates on the same images
        order = np.random.default_rng(seed).permutation(len(files))
        cut = int(round(len(order) * (1 - (holdout or FOLDER_HOLDOUT))))
        test_files = [files[i] for i in order[cut:]]
        test_labels = [labels[i] for i in order[cut:]]
        files, labels = [files[i] for i in order[:cut]], [labels[i] for i in order[:cut]]

    return Source(_files_dataset(files, labels), _files_dataset(test_files, test_labels),
                  len(classes), classes, len(files), len(test_files), skipped=bad)


def image_files(files):
    """(dataset of (image uint8, 0), readable files, unreadable files) for a plain
    list of image files without classes (e.g. int8 calibration photos)."""
    files, labels, bad = _readable(list(files), [0] * len(files))
    return _files_dataset(files, labels), files, bad


def _files_dataset(paths, targets):
    import tensorflow as tf

    # from_tensor_slices cannot infer a dtype from an empty list: slice a dummy, take 0.
    data = tf.data.Dataset.from_tensor_slices((paths or [""], targets or [0]))
    return data.take(len(paths)).map(_decode_file, num_parallel_calls=tf.data.AUTOTUNE)


def _class_folders(root):
    """Sorted class sub-folders of `root`. A link back to `root` (or above it) is
    not a class: it would add the whole dataset again under a new label."""
    real_root = os.path.realpath(root)
    classes = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        real = os.path.realpath(folder)
        if os.path.commonpath([real, real_root]) == real:
            print(f"dataset: ignored {folder!r}: a link back to {real!r}, not a class folder",
                  file=sys.stderr)
            continue
        classes.append(name)
    return classes


def _list_files(root, classes):
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        for file in sorted(os.listdir(folder)):
            if not file.startswith(".") and os.path.isfile(os.path.join(folder, file)):
                files.append(os.path.join(folder, file))
                labels.append(index)
    return files, labels


def _decode_file(path, label):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return image, label


def _readable(files, labels):
    """Drops the files TensorFlow cannot decode and reports them by name.

    Every file is decoded once, in parallel; `ignore_errors` drops the failures,
    so a corrupt file costs a line on stderr, never a long run."""
    import tensorflow as tf

    if not files:
        return files, labels, []
    probe = tf.data.Dataset.from_tensor_slices(files).map(
        lambda p: (p, tf.shape(_decode_file(p, 0)[0])), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    ).ignore_errors()
    good = {p.decode() for p, _ in probe.as_numpy_iterator()}
    bad = [f for f in files if f not in good]
    if bad:
        print(f"dataset: skipped {len(bad)} unreadable file(s): {', '.join(bad)}", file=sys.stderr)
    keep = [i for i, f in enumerate(files) if f in good]
    return [files[i] for i in keep], [labels[i] for i in keep], bad


def _tfds(name, data_dir, holdout, eval_split=None):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # tfds raises its own DatasetNotFoundError
        first_line = str(err).splitlines()[0]
        raise ValueError(f"dataset: unknown tfds dataset {name!r} ({first_line})") from err
    splits = builder.info.splits
    if "train" not in splits:
        raise FileNotFoundError(
            f"dataset: tfds dataset {name!r} is not prepared in {builder.data_dir!r} "
            f"(run tfds.builder({name!r}).download_and_prepare() where there is a network, "
            f"then pass --data-dir)")
    if holdout:
        cut = int(round(100 * (1 - holdout)))
        train_split, test_split = f"train[:{cut}%]", f"train[{cut}%:]"
    elif eval_split is not None:
        if eval_split not in splits:
            raise ValueError(f"dataset: tfds dataset {name!r} has no split {eval_split!r}; "
                             f"got splits {sorted(splits)}")
        train_split, test_split = "train", eval_split
    else:
        test_split = next((s for s in EVAL_FOLDERS if s in splits), None)
        if test_split is None:
            raise ValueError(f"dataset: tfds dataset {name!r} has no test or validation split; "
                             f"got splits {sorted(splits)}")
        train_split = "train"
    label = builder.info.features["label"]

    def rgb(image, target):
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        return image, target

    def dataset(split):
        data = builder.as_dataset(split=split, as_supervised=True, shuffle_files=split == train_split)
        return data.map(rgb, num_parallel_calls=tf.data.AUTOTUNE)

    return Source(dataset(train_split), dataset(test_split), label.num_classes, list(label.names),
                  splits[train_split].num_examples, splits[test_split].num_examples, streamed=True)
