"""Keras weight files (`.weights.h5`, `.keras`) as `weights=` sources, loaded strictly.

`model.load_weights` does the loading; before it, the file's arrays are
compared with the model's variables (count and shapes, so a deeper model's file
is refused rather than cut) and checked to be finite, and a file that is no
Keras weight file raises an error naming it. A tiled (high-resolution) model's
token MLP width is read from the file, so it rebuilds at its own width.
"""

import contextlib
import io
import re
import zipfile

import numpy as np

_TOKEN_KERNEL = re.compile(r"^layers/mixer_block[^/]*/token_mixing/dense_0/vars/0$")


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


def _arrays(handle):
    """{dataset path: dataset} of the model's layers (optimizer state excluded)."""
    import h5py

    found = {}

    def visit(name, obj):  # returns None: a value would stop the walk
        if isinstance(obj, h5py.Dataset):
            found[f"layers/{name}"] = obj

    if "layers" in handle:
        handle["layers"].visititems(visit)
    return found


def source(path, source_class):
    """A `source_class` (weights.WeightsSource) for a Keras weights file."""
    with _h5(path) as handle:
        arrays = _arrays(handle)
        widths = {obj.shape[1] for name, obj in arrays.items() if _TOKEN_KERNEL.match(name)}
    if not arrays:
        raise ValueError(f"weights: {path!r} holds no layer weights")
    return source_class(name=repr(path), kind="keras", path=path,
                        tokens_mlp_dim=widths.pop() if len(widths) == 1 else None)


def load(model, source):
    """Checks the file against `model`, then `model.load_weights`."""
    path = source.path
    with _h5(path) as handle:
        arrays = _arrays(handle)
        got = sorted(tuple(obj.shape) for obj in arrays.values())
        want = sorted(tuple(v.shape) for v in model.weights)
        if got != want:
            extra = _difference(got, want)
            missing = _difference(want, got)
            raise ValueError(
                f"weights: {source.name} holds {len(got)} arrays, the model has {len(want)} "
                f"variables; shapes only in the file: {extra[:3]}, only in the model: "
                f"{missing[:3]} (a checkpoint of another variant or depth?); nothing was loaded")
        for name, obj in arrays.items():
            values = obj[()]
            if not np.issubdtype(values.dtype, np.floating):
                raise ValueError(f"weights: {source.name} array {name!r} has dtype "
                                 f"{values.dtype}, expected floating point; nothing was loaded")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"weights: {source.name} array {name!r} has NaN or Inf "
                                 f"values; nothing was loaded")
    before = model.get_weights()
    try:
        model.load_weights(path)
    except ValueError as err:
        model.set_weights(before)  # never leave a half-loaded model behind
        raise ValueError(f"weights: {source.name} does not match this Mixer: {err}") from err


def _difference(a, b):
    rest = list(b)
    out = []
    for item in a:
        if item in rest:
            rest.remove(item)
        else:
            out.append(item)
    return out
