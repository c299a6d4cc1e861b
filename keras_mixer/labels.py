"""ImageNet labels, shipped with the package so decoding works offline.

`imagenet1k_labels.tsv`: the 1000 classes of the ImageNet-1k heads, in TFDS
`imagenet2012` order (sorted WordNet ids), named exactly as Keras' own class
index names them (`African_elephant`; from Keras' Apache-2.0
imagenet_class_index.json), so `decode_predictions` gives the tuples
`keras.applications.imagenet_utils.decode_predictions` gives.
`imagenet21k_labels.tsv`: the 21,843 "fall11" synsets of the ImageNet-21k
heads, in the authors' order, with their first WordNet lemma (from the lemmas
distributed with timm). Each line is `wordnet_id<TAB>name`.
Heads of other sizes (MIIL's 11,221 winter21 classes) take their names from
their repository's config.json (`label_names`) where it has them.
"""

import functools
import os

import numpy as np

_DATA = os.path.join(os.path.dirname(__file__), "data")
LABEL_FILES = {1000: "imagenet1k_labels.tsv", 21843: "imagenet21k_labels.tsv"}


@functools.lru_cache(maxsize=None)
def imagenet_labels(classes=1000):
    """[(wordnet_id, name)] for a head of `classes` outputs (1000 or 21843)."""
    if classes not in LABEL_FILES:
        raise ValueError(
            f"classes: labels ship for {sorted(LABEL_FILES)} classes; got {classes!r}"
        )
    with open(os.path.join(_DATA, LABEL_FILES[classes]), encoding="utf-8") as f:
        return tuple(tuple(line.rstrip("\n").split("\t", 1)) for line in f)


def decode_predictions(preds, top=5):
    """Top classes per image: a list of [(wordnet_id, name, score), ...].

    `preds` has shape (batch, 1000) or (batch, 21843), as returned by a Mixer
    with an ImageNet head (probabilities or logits).
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] not in LABEL_FILES:
        raise ValueError(
            f"preds: expected shape (batch, 1000) or (batch, 21843); got {preds.shape}"
        )
    if not (isinstance(top, (int, np.integer)) and 1 <= top <= preds.shape[1]):
        raise ValueError(f"top: expected an int in [1, {preds.shape[1]}]; got {top!r}")
    labels = imagenet_labels(preds.shape[1])
    return [[(*labels[i], float(row[i])) for i in top_k(row, top)] for row in preds]


def top_k(scores, k):
    """Indices of the `k` highest scores, best first, computed exactly as
    `keras.applications.imagenet_utils.decode_predictions` does, so ties come
    out in Keras' order (NumPy's default sort, whose tie order can depend on the
    CPU's vector extensions)."""
    return np.asarray(scores).argsort()[-k:][::-1]


def read_label_file(path, arg="labels"):
    """Class names from a text file, one per line (blank lines ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{arg}: no such file: {path!r}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def class_names(classes, labels=None, arg="labels"):
    """Names for a head of `classes` outputs: `labels` (a list, a text file with
    one name per line, or "digits"), else ImageNet names for 1000/21843
    classes, else "0", "1", ...; raises if the count differs."""
    if labels == "digits":
        from keras_mixer.datasets import DIGITS_LABELS

        labels = list(DIGITS_LABELS)
    elif isinstance(labels, (str, os.PathLike)):
        labels = read_label_file(os.fspath(labels), arg)
    elif labels is None:
        if classes in LABEL_FILES:
            return [name for _, name in imagenet_labels(classes)]
        return [str(i) for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"{arg}: the model has {classes} classes; got {len(labels)} labels")
    return [str(label) for label in labels]
