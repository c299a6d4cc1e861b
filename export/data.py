"""Images for calibration (representative data) and verification.

A source is named as on the command line:
  default        the embedded digits (keras_mixer.datasets.embedded_digits):
                 train split for calibration, test split for verification
  folder:PATH    class sub-folders of JPEG/PNG files (PATH/<label>/*.jpg), or
                 a flat folder of images (no labels)
  tfds:NAME      a TFDS dataset already in the local TFDS data dir
                 (tfds:NAME/SPLIT picks the split; no download is attempted)
Every image goes through the paper's eval transform
(`keras_mixer.preprocessing.eval_resize_crop`) to the model's input size.
"""

import os

import numpy as np

SOURCES = ("default", "folder:PATH", "tfds:NAME[/SPLIT]")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def check_source(source):
    if not isinstance(source, str) or not (
        source == "default" or source.startswith(("folder:", "tfds:"))
    ):
        raise ValueError(f"representative: expected one of {SOURCES}; got {source!r}")
    if source.startswith("folder:") and not os.path.isdir(source[7:]):
        raise FileNotFoundError(f"representative: no such folder: {source[7:]!r}")


def load_images(source, size, count, split="train", seed=0):
    """(images uint8 (n, H, W, 3), labels int32 (n,) or None, label_names or None).

    `split` ("train" or "test") applies to the default source; at most `count`
    images are returned, a seeded random subset when there are more.
    """
    check_source(source)
    if source == "default":
        images, labels, names = _digits(size, split)
    elif source.startswith("folder:"):
        images, labels, names = _folder(source[7:], size)
    else:
        images, labels, names = _tfds(source[5:], size, split)
    if len(images) > count:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
        images = images[keep]
        labels = None if labels is None else labels[keep]
    return images, labels, names


def _digits(size, split):
    import tensorflow as tf

    from keras_mixer.datasets import DIGITS_LABELS, embedded_digits

    (x_train, y_train), (x_test, y_test) = embedded_digits(max(size))
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    if size[0] != size[1]:
        images = tf.cast(tf.image.resize(images, size), tf.uint8).numpy()
    return images, labels, list(DIGITS_LABELS)


def _folder(path, size):
    # A small local reader; class folders sorted by name give label indices,
    # as keras.utils.image_dataset_from_directory does.
    from keras_mixer.preprocessing import load_image

    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files, labels = [], []
    for index, name in enumerate(classes or [None]):
        folder = os.path.join(path, name) if name else path
        for file in sorted(os.listdir(folder)):
            if file.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(folder, file))
                labels.append(index)
    if not files:
        raise ValueError(f"representative: no {IMAGE_SUFFIXES} images in {path!r}")
    images = np.stack([load_image(f, size).numpy() for f in files])
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    if not classes:
        return images, None, None
    return images, np.asarray(labels, np.int32), classes


def _tfds(spec, size, split):
    import tensorflow_datasets as tfds

    from keras_mixer.preprocessing import eval_resize_crop

    name, _, chosen = spec.partition("/")
    try:
        builder = tfds.builder(name)
    except Exception as err:  # tfds raises its own DatasetNotFoundError
        first_line = str(err).splitlines()[0]
        raise ValueError(f"representative: unknown tfds dataset {name!r} ({first_line})") from err
    try:
        data = builder.as_dataset(split=chosen or split, as_supervised=True)
    except AssertionError as err:  # tfds asserts when the files are absent
        raise FileNotFoundError(
            f"representative: tfds dataset {name!r} is not prepared in {builder.data_dir!r} "
            f"(run tfds.builder({name!r}).download_and_prepare() where there is a network)"
        ) from err
    images, labels = [], []
    for image, label in data.take(2000):
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        images.append(np.round(eval_resize_crop(image, size).numpy()).astype(np.uint8))
        labels.append(int(label))
    names = builder.info.features["label"].names if "label" in builder.info.features else None
    return np.stack(images), np.asarray(labels, np.int32), names
