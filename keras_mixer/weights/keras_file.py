"""Keras weight files (`.weights.h5`, `.keras`) of keras-mixer models as a
`weights=` source, read into the authors' key table like every other format.

Keras stores a functional model's variables under `layers/<layer>/...`, each
layer named after its class in model order (`conv2d`, `mixer_block`,
`mixer_block_1`, ..., `layer_normalization`, `dense`) and each sublayer after
its attribute (`token_mixing/dense_0`), so the table below maps a file to the
authors' keys one to one, and the strict check refuses anything else by its
name in the file. A file saved from any keras-mixer model (a builder's, a
`keras-mixer train` run's, with its own head or none) loads into a Mixer of
the same size: with its head or without it (`include_top=False`, a new head
for other classes), and at K x its resolution (Appendix C tiling). A tiled
model's token MLP width is read from the file, so it rebuilds at that width.
"""

import contextlib
import io
import json
import re
import zipfile

import numpy as np

from keras_mixer.weights import checkpoint
from keras_mixer.weights.source import SourceKind, WeightsSource

SUFFIXES = (".weights.h5", ".keras")
_TOP = {"conv2d": "stem", "layer_normalization": "pre_head_layer_norm", "dense": "head"}
_BLOCK = re.compile(r"^mixer_block(?:_(\d+))?$")
_SUB = {"layer_norm_0": "LayerNorm_0", "layer_norm_1": "LayerNorm_1",
        "token_mixing/dense_0": "token_mixing/Dense_0", "token_mixing/dense_1": "token_mixing/Dense_1",
        "channel_mixing/dense_0": "channel_mixing/Dense_0",
        "channel_mixing/dense_1": "channel_mixing/Dense_1"}
_VARS = {"dense": ("kernel", "bias"), "conv": ("kernel", "bias"), "norm": ("scale", "bias")}


def authors_key(name):
    """The authors' key of a dataset path in a Keras weights file, or the path
    itself (`layers/dense_1/vars/0`) when it is no Mixer variable."""
    match = re.match(r"^layers/(.+)/vars/(\d+)$", name)
    if not match:
        return name
    layer, index = match.group(1), int(match.group(2))
    top, _, sub = layer.partition("/")
    if top in _TOP and not sub:
        base, kind = _TOP[top], "norm" if top == "layer_normalization" else "dense"
    elif _BLOCK.match(top) and sub in _SUB:
        block = int(_BLOCK.match(top).group(1) or 0)
        base = f"MixerBlock_{block}/{_SUB[sub]}"
        kind = "norm" if sub.startswith("layer_norm") else "dense"
    else:
        return name
    names = _VARS[kind]
    return f"{base}/{names[index]}" if index < len(names) else name


def source(path):
    """A WeightsSource for a Keras weights file, from its dataset headers."""
    shapes = {k: s for k, (s, _) in _headers(path)[0].items()}
    if not shapes:
        raise ValueError(f"weights: {path!r} holds no layer weights")
    head = shapes.get("head/kernel")
    token = shapes.get(checkpoint.TOKEN_KEY)
    found = WeightsSource(
        name=repr(path), kind=SourceKind.KERAS, path=path,
        classes=head[-1] if head and len(head) == 2 else None,
        resolution=checkpoint.native_resolution(shapes, path, square_only=False),
        tokens_mlp_dim=token[1] if token and len(token) == 2 else None)
    if path.endswith(".keras"):  # its config says what a bare .weights.h5 cannot
        _from_saved_config(found, path)
    return found


def _from_saved_config(found, path):
    """The GELU form, preprocessing and input size saved in a `.keras` file's
    config.json, so a model built from it computes what the saved one did.
    (A `.weights.h5` has no config: the authors' tanh GELU and [-1, 1]
    rescaling are assumed; docs/weights.md says so.)"""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"weights: {path!r} has no readable Keras model config: {err}") from err
    for layer in layers:
        name, cfg = layer.get("class_name"), layer.get("config", {})
        if name == "InputRescaling":
            found.preprocessing = {k: cfg[k] for k in ("scale", "offset", "crop_fraction",
                                                       "interpolation") if k in cfg}
        elif name == "MixerBlock" and "gelu_form" in cfg:
            found.gelu_form = cfg["gelu_form"]
        elif name == "InputLayer" and len(cfg.get("batch_shape") or ()) == 4:
            height, width = cfg["batch_shape"][1:3]
            if found.resolution is None and isinstance(height, int) and isinstance(width, int):
                found.resolution = (height, width)


def headers(source, *, cache_dir=None):
    """(path, {our key: (shape, dtype name)}, file_key)."""
    found, names = _headers(source.path)
    return source.path, found, lambda key: names.get(key, key)


def read(source, path, keys):
    _, names = _headers(path)
    with _h5(path) as handle:
        return {key: np.asarray(handle[names[key]][()]) for key in keys}


def _headers(path):
    """({our key: (shape, dtype name)}, {our key: dataset path in the file})."""
    import h5py

    found, names = {}, {}

    def visit(name, obj):  # returns None: a value would stop the walk
        if isinstance(obj, h5py.Dataset):
            full = f"layers/{name}"
            key = authors_key(full)
            found[key] = (tuple(obj.shape), obj.dtype.name)
            names[key] = full

    with _h5(path) as handle:
        if "layers" in handle:  # optimizer state (a .keras file's) is not weights
            handle["layers"].visititems(visit)
    return found, names


@contextlib.contextmanager
def _h5(path):
    import h5py

    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as inner:
                data = io.BytesIO(inner.read())
            handle = h5py.File(data, "r")
        else:
            handle = h5py.File(path, "r")
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"weights: {path!r} is not a readable Keras weights file: {err}") from err
    with handle:
        yield handle
