"""Reading and fetching checkpoint files, header first.

Two formats hold Mixer weights:
- the authors' `.npz` (flat NumPy archive, Flax keys `MixerBlock_3/token_mixing/
  Dense_0/kernel`, Keras layouts), from their bucket through `keras.utils.get_file`;
- timm's Hugging Face repositories (`config.json` + `model.safetensors`, PyTorch
  keys and layouts), through `huggingface_hub`, or a local copy of one.
Both are checked from their headers (keys, shapes, dtypes) before any array is
read, then only the expected arrays are read and checked to be finite. A
download goes to a temporary name and is renamed into place, and a cached file
that does not parse is removed and fetched again.
"""

import json
import os
import re
import struct
import sys
import zipfile

import numpy as np

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
# safetensors dtype names -> NumPy (BF16 is widened to float32 on read).
_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "<u2"}
_ST_MAX_HEADER = 100 * 2**20  # the format's own limit


def unreadable(path, err):
    return ValueError(
        f"weights: {path!r} is not a readable checkpoint (truncated download or "
        f"another format?): {err}")


# --- the authors' .npz -------------------------------------------------------

def npz_headers(path):
    """{key: (shape, dtype name)} from the array headers, reading no data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not a zip archive")
        headers = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in readers:
                        raise ValueError(f"unsupported .npy format version {version} in {name!r}")
                    shape, _, dtype = readers[version](member)
                headers[name.removesuffix(".npy")] = (tuple(shape), dtype.name)
        return headers
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise unreadable(path, err) from err


def read_npz(path, keys):
    """The arrays `keys` of an `.npz` (no pickles), after a header check."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise unreadable(path, err) from err


# --- safetensors -------------------------------------------------------------

def safetensors_headers(path):
    """{key: (shape, dtype name)} of a `.safetensors` file from its JSON header."""
    return {k: (tuple(v["shape"]), v["dtype"]) for k, v in _st_header(path).items()}


def _st_header(path):
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if not 0 < size <= _ST_MAX_HEADER:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        data_start = 8 + size
        total = os.path.getsize(path) - data_start
        for key, entry in header.items():
            begin, end = entry["data_offsets"]
            count = int(np.prod(entry["shape"], dtype=np.int64))
            itemsize = np.dtype(_ST_DTYPES.get(entry["dtype"], "V1")).itemsize
            if not (0 <= begin <= end <= total and end - begin == count * itemsize
                    and all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
                raise ValueError(f"tensor {key!r} has an inconsistent header entry {entry}")
            entry["_start"] = data_start + begin
        return header
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise unreadable(path, err) from err


def read_safetensors(path, keys):
    """The tensors `keys` as float32/float16 arrays (BF16 widened to float32)."""
    header = _st_header(path)
    out = {}
    with open(path, "rb") as f:
        for key in keys:
            entry = header[key]
            dtype = _ST_DTYPES[entry["dtype"]]
            f.seek(entry["_start"])
            count = int(np.prod(entry["shape"], dtype=np.int64))
            array = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
            if entry["dtype"] == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            out[key] = array.reshape(entry["shape"])
    return out


def st_dtype_name(dtype):
    return {"F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16"}.get(
        dtype, dtype)


# --- timm's layout -----------------------------------------------------------

_TIMM_ARCH = re.compile(r"^mixer_([sblh])(\d+)_(\d+)(?:_.*)?$")


def timm_to_authors_keys(num_blocks):
    """{timm key: (authors' key, transpose or None)} for a Mixer of `num_blocks`."""
    table = {"stem.proj.weight": ("stem/kernel", (2, 3, 1, 0)),  # OIHW -> HWIO
             "stem.proj.bias": ("stem/bias", None),
             "norm.weight": ("pre_head_layer_norm/scale", None),
             "norm.bias": ("pre_head_layer_norm/bias", None),
             "head.weight": ("head/kernel", (1, 0)),  # Linear (out, in) -> (in, out)
             "head.bias": ("head/bias", None)}
    for i in range(num_blocks):
        ours = f"MixerBlock_{i}"
        for norm, ln in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_1")):
            table[f"blocks.{i}.{norm}.weight"] = (f"{ours}/{ln}/scale", None)
            table[f"blocks.{i}.{norm}.bias"] = (f"{ours}/{ln}/bias", None)
        for mlp, name in (("mlp_tokens", "token_mixing"), ("mlp_channels", "channel_mixing")):
            for fc, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
                table[f"blocks.{i}.{mlp}.{fc}.weight"] = (f"{ours}/{name}/{dense}/kernel", (1, 0))
                table[f"blocks.{i}.{mlp}.{fc}.bias"] = (f"{ours}/{name}/{dense}/bias", None)
    return table


def read_timm_config(path):
    """What a timm repository's `config.json` says about its Mixer.

    Returns dict(variant=(letter, patch), resolution, classes, gelu_form,
    preprocessing=dict(scale, offset), crop_fraction, interpolation, label_names).
    """
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        arch = config["architecture"]
        cfg = config.get("pretrained_cfg", {})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"weights: {path!r} is not a timm config.json: {err}") from err
    match = _TIMM_ARCH.match(str(arch))
    if not match:
        raise ValueError(
            f"weights: {path!r} describes architecture {arch!r}; expected a timm "
            f"MLP-Mixer (mixer_s32_224, mixer_b16_224, ...)")
    size = int(match.group(3))
    _, height, width = cfg.get("input_size", (3, size, size))
    mean = np.asarray(cfg.get("mean", (0.5, 0.5, 0.5)), np.float64)
    std = np.asarray(cfg.get("std", (0.5, 0.5, 0.5)), np.float64)
    tag = str(cfg.get("tag", "")) + str(cfg.get("hf_hub_id", ""))
    return dict(
        variant=(match.group(1).upper(), int(match.group(2))),
        resolution=(int(height), int(width)),
        classes=int(config.get("num_classes", cfg.get("num_classes", 1000))),
        # The authors' Flax weights were trained with tanh GELU; anything trained in
        # PyTorch (timm's nn.GELU) with the exact one.
        gelu_form="tanh" if "goog" in tag else "erf",
        preprocessing=_rescaling(mean, std),
        crop_fraction=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        label_names=config.get("label_names"),
    )


def _rescaling(mean, std):
    """Rescaling(scale, offset) of 0-255 pixels equal to (x / 255 - mean) / std."""
    scale, offset = 1.0 / (255.0 * std), -mean / std
    if np.all(scale == scale[0]) and np.all(offset == offset[0]):
        return dict(scale=float(scale[0]), offset=float(offset[0]))
    return dict(scale=scale.tolist(), offset=offset.tolist())


# --- downloads ---------------------------------------------------------------

def fetch_url(origin, fname, *, cache_dir=None, cache_subdir, file_hash=None, check):
    """`keras.utils.get_file` into the cache, atomically, re-fetching a cached
    file that `check(path)` refuses. Returns the path."""
    import keras

    root = os.path.expanduser(cache_dir or os.environ.get(
        "KERAS_HOME", os.path.join("~", ".keras")))
    final = os.path.join(root, cache_subdir, fname)
    if os.path.isfile(final):
        try:
            check(final)
            return final
        except ValueError as err:
            print(f"weights: the cached {final} is unreadable ({err}); fetching it again",
                  file=sys.stderr)
            os.remove(final)
    if cache_dir is not None:  # get_file silently falls back to /tmp if it is missing
        os.makedirs(cache_dir, exist_ok=True)
    # A killed download leaves only this partial name behind, never the final one.
    partial = f"{fname}.partial-{os.getpid()}"
    path = keras.utils.get_file(partial, origin=origin, cache_subdir=cache_subdir,
                                cache_dir=cache_dir, file_hash=file_hash)
    try:
        check(path)
    except ValueError:
        os.remove(path)
        raise
    os.replace(path, final)
    return final


def hf_download(repo, filename):
    """A file of a Hugging Face repository through huggingface_hub's cache."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise ImportError(
            f"weights: 'hf://{repo}' needs huggingface_hub: pip install "
            f"'keras-mixer[hf]' (or pass a local directory holding config.json and "
            f"model.safetensors)") from err
    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as err:  # network, missing file, offline mode without a cache
        raise OSError(
            f"weights: could not get {filename} of hf://{repo} ({type(err).__name__}: "
            f"{err}). Without network, download the repository's config.json and "
            f"model.safetensors elsewhere and pass weights='/path/to/that/directory', "
            f"or copy the repository into the Hugging Face cache (HF_HOME)") from err
