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
    """{key: (shape, dtype name)} from the array headers, reading no data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not a zip archive")
        found = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in readers:
                        raise ValueError(f"unsupported .npy format version {version} in {name!r}")
                    shape, _, dtype = readers[version](member)
                found[name.removesuffix(".npy")] = (tuple(shape), dtype.name)
        return found
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise checkpoint.unreadable(path, err) from err


def read_npz(path, keys):
    """The arrays `keys` of an `.npz` (no pickles), after a header check."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise checkpoint.unreadable(path, err) from err
