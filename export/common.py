"""Model facts shared by the TFLite, SavedModel and verification paths."""

import os

from keras_mixer import files
from keras_mixer.precision import SERVER_EXPORT as PRECISIONS  # noqa: F401 (export's choices)


def fspath(path):
    """A str for an os.PathLike (pathlib.Path), anything else unchanged."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def fspath_source(source):
    """An image source: a folder given as os.PathLike is "folder:PATH"."""
    return f"folder:{os.fspath(source)}" if isinstance(source, os.PathLike) else source


def check_file_output(output, *, overwrite, suffix, arg="output"):
    """`output` as a str, checked as `files.check_output` does; a directory at
    the path is refused before any work (a rename onto it would fail last)."""
    output = fspath(output)
    files.check_output(output, overwrite=overwrite, suffix=suffix, arg=arg)
    if os.path.isdir(output):
        raise IsADirectoryError(f"{arg}: expected a file path; got {output!r}, a directory")
    return output


def static_image_size(model):
    """(H, W) of the model's input; raises if either is dynamic."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or not all(isinstance(d, int) for d in shape[1:3]):
        raise ValueError(
            f"model: a static input size (batch, H, W, 3) is needed to export; got input "
            f"shape {shape}. Rebuild the model with input_shape=(H, W, 3).")
    return shape[1], shape[2]


# What a model's output is, as the sidecar schema states it (`metadata.OUTPUT_KINDS`).
OUTPUT_KINDS = ("probabilities", "logits")
# Layers an output passes through unchanged in kind: no weights, one input.
_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                 "GaussianDropout", "AlphaDropout", "Identity", "Flatten", "Reshape",
                 "ActivityRegularization", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                 "GlobalMaxPooling1D", "GlobalMaxPooling2D")


def output_kind(model, output_kind=None):
    """"probabilities" (a softmax: rows sum to 1) or "logits" (linear), read from the graph.

    Walks back from the model's output through layers without weights (an
    Activation or Softmax layer, dropout, reshapes, pooling) to the first layer
    that decides it: a softmax gives "probabilities", a linear layer with weights
    (Dense's own activation None/linear) "logits". A sigmoid (independent
    per-class scores: neither kind), any other activation, a Lambda or an
    unknown layer raise ValueError unless the caller states `output_kind`,
    which is then taken as it is (checked against OUTPUT_KINDS).
    """
    if output_kind is not None:
        return check_output_kind(output_kind)
    return _graph_kind(model)


def check_output_kind(output_kind):
    """Checks an `output_kind` argument (None: read from the model); returns it."""
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind: expected one of {OUTPUT_KINDS} or None (read from "
                         f"the model); got {output_kind!r}")
    return output_kind


def _graph_kind(model):
    def refuse(layer, why):
        raise ValueError(
            f"model: cannot tell the output kind from its layer {layer.name!r} "
            f"({type(layer).__name__}: {why}); expected a head ending in softmax "
            f"(probabilities) or a linear layer (logits). Pass output_kind= "
            f"(--output-kind) one of {OUTPUT_KINDS} if you know it")

    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        raise ValueError(f"model: expected one output to export; got {len(outputs or ())}")
    tensor = outputs[0]
    for _ in range(1000):
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            raise ValueError("model: cannot read its graph (not a functional model); pass "
                             f"output_kind= (--output-kind) one of {OUTPUT_KINDS}")
        layer, node_index = history[0], history[1]
        kind = type(layer).__name__
        if kind == "Softmax":
            return "probabilities"
        activation = getattr(layer, "activation", None)
        if activation is not None or kind == "Activation":
            name = getattr(activation, "__name__", repr(activation))
            if name == "softmax":
                return "probabilities"
            if name == "sigmoid":
                refuse(layer, "sigmoid, independent per-class scores that are neither "
                              "probabilities summing to 1 nor logits; export the model "
                              "without the final sigmoid")
            if name != "linear":
                refuse(layer, f"activation {name!r}")
            if layer.weights:
                return "logits"
        elif layer.weights and kind != "Lambda":
            return "logits"  # a weighted layer with no activation is linear
        elif kind not in _PASS_THROUGH:
            refuse(layer, "a layer whose effect on the output is unknown")
        inputs = layer._inbound_nodes[node_index].input_tensors
        if len(inputs) != 1:
            refuse(layer, f"{len(inputs)} inputs")
        tensor = inputs[0]
    raise ValueError("model: its output's graph is too deep to read")
