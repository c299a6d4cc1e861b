"""Loading a Mixer, classifying image files, and converting checkpoints.

    net = load_model("B/16", weights="imagenet")          # or a saved .keras file
    predict(["cat.jpg"], model="B/16", weights="imagenet", top=5)
    convert("Mixer-B_16.npz", "b16.keras")

The functions behind `keras-mixer predict` and `keras-mixer convert`; they need
only Keras and a backend (images are decoded with Pillow).
"""

import os

import numpy as np

from keras_mixer import files
from keras_mixer import labels as labels_lib
from keras_mixer.weights import npz as npz_format
from keras_mixer import weights as weights_lib


def load_model(model, *, weights=None):
    """A Keras Mixer from a model object, a saved `.keras` file, or a variant
    name ("B/16") built with `weights` (None: random init)."""
    import keras

    from keras_mixer.model import VARIANTS, Mixer

    if isinstance(model, keras.Model):
        net = model
    elif isinstance(model, str) and model.endswith(".keras"):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"model: no such file: {model!r}")
        if weights is not None:
            raise ValueError(f"weights: a .keras file carries its own; got {weights!r}")
        net = keras.models.load_model(model)
    elif isinstance(model, dict) or model in VARIANTS:
        net = Mixer(model, weights=weights)
    else:
        raise ValueError(
            f"model: expected a .keras file or a variant name {list(VARIANTS)} (or a "
            f"keras.Model); got {model!r}")
    if not is_mixer(net):
        raise ValueError(f"model: {model!r} is not an MLP-Mixer (it has no MixerBlock layers)")
    return net


def is_mixer(model):
    """Whether a Keras model contains MLP-Mixer blocks (at any depth)."""
    import keras

    from keras_mixer.layers import MixerBlock

    return isinstance(model, keras.Model) and any(
        isinstance(layer, MixerBlock) for layer in model._flatten_layers())


def predict(images, *, model="B/16", weights="imagenet", top=5, labels=None):
    """Top-`top` classes of each image file: [[(label, score), ...], ...].

    labels: class names (a list or a text file, one per line) for a custom head;
    by default a timm repository's `label_names`, else ImageNet names for
    ImageNet heads. Every argument and every image is
    checked before any download or model work.
    """
    from keras_mixer.preprocessing import EvalTransform, load_image

    if isinstance(images, (str, os.PathLike)):  # one path, not its characters
        images = [images]
    images = [os.fspath(p) for p in images]
    missing = [p for p in images if not os.path.isfile(p)]
    if not images or missing:
        raise FileNotFoundError(f"images: no such file(s): {missing or images}")
    if not (isinstance(top, (int, np.integer)) and not isinstance(top, bool) and top >= 1):
        raise ValueError(f"top: expected an int >= 1; got {top!r}")
    if isinstance(model, (str, dict)) and not str(model).endswith(".keras"):
        from keras_mixer.model import resolve_variant

        resolve_variant(model)
        source = weights_lib.resolve_weights(weights, model)  # no download yet
        classes, size = source.classes or 1000, source.resolution
        transform = EvalTransform(size, **{k: source.preprocessing[k] for k in (
            "crop_fraction", "interpolation") if k in source.preprocessing})
        names = _check_top_and_labels(
            top, classes, source.label_names if labels is None else labels)
        batch = np.stack([load_image(p, transform) for p in images])
        net = load_model(model, weights=weights)
    else:
        net = load_model(model, weights=weights)
        names = _check_top_and_labels(top, int(net.output_shape[-1]), labels)
        batch = np.stack([load_image(p, EvalTransform.of(net)) for p in images])
    probs = np.asarray(net.predict(batch, verbose=0))
    return [[(names[i], float(row[i])) for i in labels_lib.top_k(row, top)] for row in probs]


def _check_top_and_labels(top, classes, labels):
    if top > classes:
        raise ValueError(f"top: expected an int in [1, {classes}]; got {top!r}")
    return labels_lib.class_names(classes, labels)


def convert(checkpoint, output, *, model=None, input_size=None, include_top=True,
            overwrite=False):
    """Authors' `.npz` -> `.keras` model or `.weights.h5`; returns the model."""
    from keras_mixer.model import VARIANTS, Mixer

    files.check_output(output, overwrite=overwrite, suffix=(".keras", ".weights.h5"))
    if not checkpoint.endswith(".npz"):
        raise ValueError(f"checkpoint: expected an authors' .npz file; got {checkpoint!r}")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint: no such file: {checkpoint!r}")
    headers = npz_format.npz_headers(checkpoint)
    found = weights_lib.infer_variant({k: s for k, (s, _) in headers.items()}, VARIANTS)
    if model is not None and model != found:
        raise ValueError(f"model: {checkpoint!r} holds a Mixer {found}; got --model {model!r}")
    input_shape = None if input_size is None else (input_size, input_size, 3)
    net = Mixer(found, weights=checkpoint, input_shape=input_shape, include_top=include_top)
    with files.atomic_path(output, room=net.weights) as tmp:
        if output.endswith(".keras"):
            net.save(tmp)
        else:
            net.save_weights(tmp)
    return net
