"""Images for int8 calibration (representative data) and `export verify`.

A thin adapter over the dataset specs (`keras_mixer.datasets`), so a
source means what `keras-mixer train --dataset` means:
  default            the embedded digits
  folder:PATH        class sub-folders: PATH/train and PATH/test (or val, validation)
                     when present, else the seeded 10% hold-out that `train` makes;
                     or a flat folder of images with no class sub-folders (no labels,
                     all of them for either use)
  tfds:NAME[/SPLIT]  a prepared tfds dataset (from `data_dir` when given; nothing is
                     downloaded); SPLIT, when given, serves both uses
Calibration takes the training split, verification the test (held-out) split.
Every image goes through the model's own eval transform
(`keras_mixer.preprocessing.EvalTransform.of(model)`: its checkpoint's resize,
crop and interpolation) to the model's input size.
"""

import contextlib
import os

import numpy as np

from keras_mixer import datasets

SOURCES = ("default", "folder:PATH", "tfds:NAME[/SPLIT]")
# A tfds split can be huge: the seeded subset is drawn from its first images.
TFDS_POOL = 2000


def check_source(source, *, data_dir=None, arg="representative"):
    """Checks a source without loading anything; errors name `arg`."""
    with _named(arg):
        datasets.check_spec(_spec(source)[0], data_dir)


def load_images(source, transform, *, count, split="train", seed=0, data_dir=None,
                arg="representative"):
    """(images uint8 (n, H, W, 3), labels int32 (n,) or None, label_names or None).

    transform: the model's `EvalTransform`, or (H, W) for the paper's transform.
    `split` is "train" (calibration) or "test" (verification); at most `count`
    images are returned, a seeded random subset when there are more. `seed` also
    picks a folder's hold-out, as `keras-mixer train --seed` does (default 0 in both).
    """
    import tensorflow as tf

    from keras_mixer.preprocessing import EvalTransform

    transform = EvalTransform.coerce(transform)
    check_source(source, data_dir=data_dir, arg=arg)
    with _named(arg):
        dataset, n, names = _split(source, split, max(transform.size), data_dir, seed)
    dataset = _subset(dataset, n, count, seed).map(
        lambda x, y: (tf.cast(tf.round(transform(x)), tf.uint8), y),
        num_parallel_calls=tf.data.AUTOTUNE)
    batches = list(dataset.batch(256).as_numpy_iterator())
    if not batches:
        raise ValueError(f"{arg}: expected at least one image; got none in the {split} split "
                         f"of {source!r}")
    images = np.concatenate([x for x, _ in batches])
    labels = None if names is None else np.concatenate([y for _, y in batches]).astype(np.int32)
    return images, labels, names


def _spec(source):
    """(training spec, tfds split or None): tfds:NAME/SPLIT names a split."""
    if isinstance(source, str) and source.startswith("tfds:") and "/" in source:
        name, _, split = source.partition("/")
        return name, split or None
    return source, None


def _split(source, split, image_size, data_dir, seed):
    """(unbatched (image, label) dataset, its size, class names or None)."""
    spec, tfds_split = _spec(source)
    if spec.startswith("folder:") and not _has_subfolders(spec[7:]):
        return _flat_folder(spec[7:])
    source = datasets.load_source(spec, data_dir, image_size, seed=seed, eval_split=tfds_split)
    if tfds_split or split == "test":
        dataset, n = source.test, source.num_test
    else:
        dataset, n = source.train, source.num_train
    if source.streamed:
        dataset, n = dataset.take(TFDS_POOL), min(n, TFDS_POOL)
    return dataset, n, source.class_names


def _has_subfolders(path):
    return any(os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
               for d in os.listdir(path))


def _flat_folder(path):
    # The one case the training specs lack: calibration photos need no labels.
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
    dataset, files, _ = datasets.image_files(files)
    if not files:
        raise ValueError(f"dataset: no readable images in {path!r}; expected "
                         f"{path}/<image> or {path}/<class>/<image>")
    return dataset, len(files), None


def _subset(dataset, n, count, seed):
    """At most `count` elements: a seeded random subset, in dataset order."""
    import tensorflow as tf

    if n <= count:
        return dataset
    keep = tf.constant(np.sort(np.random.default_rng(seed).choice(n, count, replace=False)))
    picked = dataset.enumerate().filter(lambda i, _: tf.reduce_any(tf.equal(i, keep)))
    # take() stops the scan at the last kept element.
    return picked.take(count).map(lambda _, item: item)


@contextlib.contextmanager
def _named(arg):
    """The training specs' errors say `dataset:`; export's name its own argument."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        if not message.startswith("dataset: "):
            raise
        raise type(err)(f"{arg}: {message[len('dataset: '):]}") from err
