"""The authors' `.npz` files: flat NumPy archives with the Flax keys of the
authors' key table (`MixerBlock_3/token_mixing/Dense_0/kernel`), Keras layouts
already. Headers (keys, shapes, dtypes) are read before any array, and only
the expected arrays are read, never with pickles.
"""

import zipfile

import numpy as np

from keras_mixer.weights import checkpoint
from keras_mixer.weights import download
from keras_mixer.weights.source import RESOLUTION, SourceKind, WeightsSource


def source(path, variant):
    """A WeightsSource for a local `.npz` (its headers only)."""
    headers = npz_headers(path)  # headers only: arrays are read once, later
    shapes = {k: s for k, (s, _) in headers.items()}
    return WeightsSource(
        name=repr(path), kind=SourceKind.NPZ, path=path, variant=variant,
        classes=shapes["head/kernel"][-1] if "head/kernel" in shapes else None,
        resolution=checkpoint.native_resolution(shapes, path) or (RESOLUTION, RESOLUTION))


def headers(source, *, cache_dir=None):
    """(path, {key: (shape, dtype name)}, file_key): the authors' keys are ours."""
    path = source.path or download.get_weights_file(source.tag, source.variant,
                                                    cache_dir=cache_dir)
    return path, npz_headers(path), None


def read(source, path, keys):
    return read_npz(path, keys)


def npz_headers(path):
    """{key: (shape, dtype name)} from the array headers, reading no data; every
    member must be a plain .npy array (no pickled objects) whose header agrees
    with its size, else a ValueError names the file and the member."""
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not a zip archive")
        found = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key in found:
                    raise ValueError(f"member {info.filename!r} appears twice")
                found[key] = _npy_header(archive, info)
        return found
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise checkpoint.unreadable(path, err) from err


def _npy_header(archive, info):
    """(shape, dtype name) of one member, checked against its size."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    name = info.filename
    try:
        if not name.endswith(".npy"):
            raise ValueError("not a .npy member")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = readers[version](member)
            offset = member.tell()
        if dtype.hasobject or dtype.itemsize == 0:
            raise ValueError(f"dtype {dtype}; expected plain numbers (no pickled objects)")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"shape {shape}; expected non-negative ints")
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize != info.file_size - offset:
            raise ValueError(f"shape {shape} of {dtype} needs {count * dtype.itemsize} bytes; "
                             f"the member holds {info.file_size - offset}")
        return tuple(shape), dtype.name
    except (ValueError, EOFError, TypeError, SyntaxError, RecursionError) as err:
        raise ValueError(f"member {name!r}: {err}") from err


def read_npz(path, keys):
    """The arrays `keys` of an `.npz` (no pickles), after a header check."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise checkpoint.unreadable(path, err) from err
