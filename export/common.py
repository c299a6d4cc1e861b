"""Checks and helpers shared by the TFLite and SavedModel exporters."""

import os

from export.targets import is_mixer


def load_mixer(model, weights=None):
    """A Keras Mixer from a model object, a `.keras` file, or a variant name.

    A variant ("S/16") is built with `weights` (None: random init).
    """
    import keras

    from keras_mixer.commands import load_model
    from keras_mixer.model import VARIANTS

    if isinstance(model, keras.Model):
        net = model
    elif isinstance(model, str) and (model.endswith(".keras") or model in VARIANTS):
        net = load_model(model, weights)
    else:
        raise ValueError(
            f"model: expected a .keras file or a variant name {list(VARIANTS)}; got {model!r}"
        )
    if not is_mixer(net):
        raise ValueError(f"model: {model!r} is not an MLP-Mixer (it has no MixerBlock layers)")
    return net


def static_image_size(model):
    """(H, W) of the model's input; raises if either is dynamic."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or not all(isinstance(d, int) for d in shape[1:3]):
        raise ValueError(
            f"model: a static input size (batch, H, W, 3) is needed to export; got input "
            f"shape {shape}. Rebuild the model with input_shape=(H, W, 3)."
        )
    return shape[1], shape[2]


def check_output(output, overwrite, suffix=None):
    if suffix and not (isinstance(output, str) and output.endswith(suffix)):
        raise ValueError(f"output: expected a path ending in {suffix}; got {output!r}")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"output: {output!r} exists; pass --overwrite to replace it")


def output_kind(model):
    """"probabilities" when the model ends in a softmax, else "logits"."""
    activation = getattr(model.layers[-1], "activation", None)
    return "probabilities" if getattr(activation, "__name__", "") == "softmax" else "logits"


def label_names(model, labels=None):
    """Class names for the model's head: `labels` (a list, a text file with one
    name per line, or "digits"), else ImageNet names for 1000/21843 classes,
    else "0", "1", ..."""
    from keras_mixer import labels as labels_lib
    from keras_mixer.datasets import DIGITS_LABELS

    classes = int(model.output_shape[-1])
    if labels == "digits":
        labels = list(DIGITS_LABELS)
    elif isinstance(labels, str):
        if not os.path.isfile(labels):
            raise FileNotFoundError(f"labels: no such file: {labels!r}")
        with open(labels, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    elif labels is None:
        if classes in labels_lib.LABEL_FILES:
            return [name for _, name in labels_lib.imagenet_labels(classes)]
        return [str(i) for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"labels: the model has {classes} classes; got {len(labels)} labels")
    return [str(label) for label in labels]
