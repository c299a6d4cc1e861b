"""Model facts shared by the TFLite, SavedModel and verification paths."""

from keras_mixer.precision import SERVER_EXPORT as PRECISIONS  # noqa: F401 (export's choices)


def static_image_size(model):
    """(H, W) of the model's input; raises if either is dynamic."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or not all(isinstance(d, int) for d in shape[1:3]):
        raise ValueError(
            f"model: a static input size (batch, H, W, 3) is needed to export; got input "
            f"shape {shape}. Rebuild the model with input_shape=(H, W, 3).")
    return shape[1], shape[2]


def output_kind(model):
    """"probabilities" when the model ends in a softmax, else "logits"."""
    activation = getattr(model.layers[-1], "activation", None)
    return "probabilities" if getattr(activation, "__name__", "") == "softmax" else "logits"
