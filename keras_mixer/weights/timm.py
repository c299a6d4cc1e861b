"""timm's Mixer repositories: `config.json` + `model.safetensors`, PyTorch keys
and layouts, on Hugging Face (`hf://OWNER/REPO`, through huggingface_hub's
cache and offline mode) or in a local directory laid out like one.

Keys are mapped to the authors' table (PyTorch layouts transposed); the
config gives the variant, classes, GELU form (tanh for the authors' Flax
weights, exact for anything trained in PyTorch) and the checkpoint's own
preprocessing, which travels with the model (`InputRescaling`).
"""

import functools
import json
import math
import os
import re
import struct

import numpy as np

from keras_mixer.preprocessing import INTERPOLATIONS
from keras_mixer.weights import checkpoint
from keras_mixer.weights.source import SourceKind, WeightsSource
from keras_mixer.weights.table import HF_PREFIX

# safetensors dtype names -> NumPy (BF16 is widened to float32 on read).
_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "<u2"}
_ST_MAX_HEADER = 100 * 2**20  # the format's own limit
# Bits per value of every dtype the format knows (others are refused, as its library does).
_ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
            "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
            "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def source(where, variant, *, name, tag=None):
    """A timm repository: `hf://OWNER/REPO` or a local directory like one."""
    if where.startswith(HF_PREFIX):
        repo = where[len(HF_PREFIX):]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"weights: expected hf://OWNER/REPO; got {where!r}")
        config_path, path = hf_download(repo, "config.json"), None
    else:
        repo, path = None, where
        config_path = os.path.join(where, "config.json")
        missing = [f for f in ("config.json", "model.safetensors")
                   if not os.path.isfile(os.path.join(where, f))]
        if missing:
            raise FileNotFoundError(
                f"weights: directory {where!r} lacks {missing}; expected a timm "
                f"repository snapshot (config.json and model.safetensors)")
    info = read_timm_config(config_path)
    letter, patch = info["variant"]
    if variant != f"{letter}/{patch}":
        raise ValueError(
            f"weights: {name} holds a Mixer {letter}/{patch}; got variant {variant!r}")
    return WeightsSource(
        name=name, kind=SourceKind.TIMM, tag=tag, variant=variant, path=path, repo=repo,
        classes=info["classes"], resolution=info["resolution"],
        gelu_form=info["gelu_form"], label_names=info["label_names"],
        tokens_mlp_dim=info["tokens_mlp_dim"],
        preprocessing=dict(info["preprocessing"], crop_fraction=info["crop_fraction"],
                           interpolation=info["interpolation"]))


def headers(source, *, cache_dir=None):
    """(path, {our key: (shape, dtype name)}, file_key): timm keys renamed,
    PyTorch layouts' shapes transposed; unknown keys kept, to be refused."""
    path = (os.path.join(source.path, "model.safetensors") if source.path
            else hf_download(source.repo, "model.safetensors"))
    found = safetensors_headers(path)
    config = dict(num_blocks=_num_blocks(found))
    table = timm_to_authors_keys(config["num_blocks"])
    ours = {}
    for key, (shape, dtype) in found.items():
        name, axes = table.get(key, (key, None))
        ours[name] = (tuple(shape[a] for a in axes) if axes else shape, _dtype_name(dtype))
    inverse = {name: key for key, (name, _) in table.items()}
    return path, ours, lambda key: inverse.get(key, key)


def read(source, path, keys):
    """{our key: array} of `keys`, read from the file's own names and transposed."""
    found = safetensors_headers(path)
    table = timm_to_authors_keys(_num_blocks(found))
    inverse = {name: (key, axes) for key, (name, axes) in table.items()}
    raw = read_safetensors(path, [inverse.get(k, (k, None))[0] for k in keys])
    out = {}
    for key in keys:
        name, axes = inverse.get(key, (key, None))
        out[key] = np.ascontiguousarray(raw[name].transpose(axes)) if axes else raw[name]
    return out


def _num_blocks(found):
    blocks = {int(m.group(1)) for k in found for m in [re.match(r"blocks\.(\d+)\.", k)] if m}
    return max(blocks) + 1 if blocks else 0


def safetensors_headers(path):
    """{key: (shape, dtype name)} of a `.safetensors` file from its JSON header."""
    return {k: (tuple(v["shape"]), v["dtype"]) for k, v in _st_header(path).items()}


def _st_header(path):
    """The JSON header of a `.safetensors` file, checked as the format's own
    library checks it: an object of unique keys, `__metadata__` a str -> str
    map, each tensor {dtype, shape, data_offsets}, the tensors back to back
    from the first data byte to the last (no gap, no overlap, no trailing byte)."""
    try:
        with open(path, "rb") as f:
            start = f.read(8)
            if len(start) != 8:
                raise ValueError(f"{len(start)} bytes; expected at least 8")
            (size,) = struct.unpack("<Q", start)
            if not 0 < size <= _ST_MAX_HEADER:
                raise ValueError(f"header size {size}; expected 1 to {_ST_MAX_HEADER}")
            text = f.read(size)
        if len(text) != size:
            raise ValueError(f"header size {size} but only {len(text)} bytes follow")
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_unique_keys)
        if not isinstance(header, dict):
            raise ValueError(f"header {text[:40]!r}; expected a JSON object")
        total = os.path.getsize(path) - 8 - size
        return _st_check(header, 8 + size, total)
    except (OSError, ValueError, RecursionError, struct.error) as err:  # + JSON, UTF-8
        raise checkpoint.unreadable(path, err) from err


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"duplicated header keys {duplicated}")
    return dict(pairs)


def _st_check(header, data_start, total):
    metadata = header.pop("__metadata__", None)
    if not (metadata is None or isinstance(metadata, dict)
            and all(isinstance(v, str) for v in metadata.values())):
        raise ValueError(f"__metadata__ {metadata!r}; expected a map of strings to strings")
    spans = []
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        bits = _ST_BITS.get(dtype) if isinstance(dtype, str) else None
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if bits else (0, 0)
        if not (bits and isinstance(shape, list) and all(_uint(d) for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(_uint(o) for o in offsets)):
            raise ValueError(
                f"tensor {key!r} has the header entry {entry!r}; expected "
                f"{{dtype: one of {sorted(_ST_BITS)}, shape: [non-negative ints], "
                f"data_offsets: [begin, end]}}")
        count = 1
        for d in shape:  # the library multiplies in u64 and refuses an overflow
            count *= d
            if count * bits >= 2**64:
                raise ValueError(f"tensor {key!r}: shape {shape} overflows 64 bits")
        if offsets[1] - offsets[0] != -(-count * bits // 8):
            raise ValueError(f"tensor {key!r}: data_offsets {offsets} do not hold "
                             f"{count} {entry['dtype']} values of shape {shape}")
        entry["_start"] = data_start + offsets[0]
        spans.append((offsets[0], offsets[1], key))
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            raise ValueError(f"tensor {key!r} starts at byte {begin} of the data; expected "
                             f"{end} (tensors are contiguous, without gaps or overlaps)")
        end = stop
    if end != total:
        raise ValueError(f"the tensors cover {end} bytes of data; the file holds {total}")
    return header


def _uint(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


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


def _dtype_name(dtype):
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
    """What a timm repository's `config.json` says about its Mixer, every field
    checked (a ValueError names the file, the field and its value).

    Returns dict(variant=(letter, patch), resolution, classes, gelu_form,
    preprocessing=dict(scale, offset), crop_fraction, interpolation, label_names,
    tokens_mlp_dim): the last None but for keras-mixer's exports of tiled models,
    whose `model_args` give timm their img_size and mlp_ratio.
    """
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"weights: {path!r} is not a timm config.json: {err}") from err
    field = functools.partial(_config_field, path)
    if not isinstance(config, dict):
        field("(the file)", config, "a JSON object")
    arch = config.get("architecture")
    match = _TIMM_ARCH.match(arch) if isinstance(arch, str) else None
    if not match:
        field("architecture", arch, "a timm MLP-Mixer (mixer_s32_224, mixer_b16_224, ...)")
    cfg = config.get("pretrained_cfg", {})
    if not isinstance(cfg, dict):
        field("pretrained_cfg", cfg, "an object")
    size = int(match.group(3))
    input_size = cfg.get("input_size", [3, size, size])
    if not (isinstance(input_size, list) and len(input_size) == 3 and input_size[0] == 3
            and all(_positive_int(v) for v in input_size)):
        field("pretrained_cfg.input_size", input_size, "[3, height, width] of positive ints")
    mean = _channels(field, "pretrained_cfg.mean", cfg.get("mean", [0.5] * 3), positive=False)
    std = _channels(field, "pretrained_cfg.std", cfg.get("std", [0.5] * 3), positive=True)
    name = "num_classes" if "num_classes" in config else "pretrained_cfg.num_classes"
    classes = config.get("num_classes", cfg.get("num_classes", 1000))
    if not _positive_int(classes):
        field(name, classes, "a positive int")
    crop = cfg.get("crop_pct", 0.875)
    if not (_number(crop) and 0 < crop <= 1):
        field("pretrained_cfg.crop_pct", crop, "a number in (0, 1]")
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        field("pretrained_cfg.interpolation", interpolation,
              f"one of {INTERPOLATIONS} (what keras_mixer.preprocessing can do)")
    names = config.get("label_names")
    if names is not None and not (isinstance(names, list) and len(names) == classes
                                  and all(isinstance(n, str) for n in names)):
        field("label_names", names, f"a list of {classes} strings (num_classes)")
    letter = match.group(1).upper()
    tokens_mlp_dim = _model_args(field, config.get("model_args", {}), letter, input_size)
    tag = "".join(v for v in (cfg.get("tag"), cfg.get("hf_hub_id")) if isinstance(v, str))
    # What keras-mixer's export wrote, else: the authors' Flax weights were trained
    # with tanh GELU; anything trained in PyTorch (timm's nn.GELU) with the exact one.
    ours = config.get("keras_mixer", {})
    if not isinstance(ours, dict) or ours.get("gelu_form", "tanh") not in ("tanh", "erf"):
        field("keras_mixer", ours, "an object whose gelu_form is 'tanh' or 'erf'")
    return dict(
        variant=(letter, int(match.group(2))),
        resolution=(input_size[1], input_size[2]),
        classes=classes,
        gelu_form=ours.get("gelu_form") or ("tanh" if "goog" in tag else "erf"),
        tokens_mlp_dim=tokens_mlp_dim,
        preprocessing=_rescaling(mean, std),
        crop_fraction=float(crop),
        interpolation=interpolation,
        label_names=names,
    )


# Widths of timm's Mixers by letter; the MLPs are (0.5, 4.0) x width unless
# model_args' mlp_ratio says otherwise (keras-mixer's export of a tiled model).
_WIDTHS = {"S": 512, "B": 768, "L": 1024, "H": 1280}


def _model_args(field, args, letter, input_size):
    """The token-MLP width that `model_args` (img_size, mlp_ratio) give, or None
    for timm's default; other arguments change the function and are refused."""
    if not isinstance(args, dict) or set(args) - {"img_size", "mlp_ratio"}:
        field("model_args", args, "an object of img_size and mlp_ratio only")
    size = args.get("img_size", input_size[1:])
    if (list(size) if isinstance(size, (list, tuple)) else [size, size]) != input_size[1:]:
        field("model_args.img_size", size, f"pretrained_cfg.input_size's {input_size[1:]}")
    ratio = args.get("mlp_ratio", [0.5, 4.0])
    ratio = ratio if isinstance(ratio, list) else [ratio, ratio]
    width = _WIDTHS[letter]
    if not (len(ratio) == 2 and all(_number(r) and r > 0 for r in ratio)
            and int(ratio[0] * width) >= 1 and int(ratio[1] * width) == 4 * width):
        field("model_args.mlp_ratio", args["mlp_ratio"],
              "[tokens ratio, 4.0] (keras-mixer's variants have 4 x width channel MLPs)")
    tokens = int(ratio[0] * width)
    return None if tokens == width // 2 else tokens


def _config_field(path, name, value, allowed):
    shown = repr(value)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    raise ValueError(f"weights: {path!r} field {name}: expected {allowed}; got {shown}")


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _channels(field, name, value, *, positive):
    """mean/std: 1 or 3 finite numbers (std positive), as a float64 array of 3."""
    if not (isinstance(value, list) and len(value) in (1, 3)
            and all(_number(v) and (v > 0 or not positive) for v in value)):
        field(name, value, f"1 or 3 finite {'positive ' if positive else ''}numbers")
    return np.broadcast_to(np.asarray(value, np.float64), (3,))


def _rescaling(mean, std):
    """Rescaling(scale, offset) of 0-255 pixels equal to (x / 255 - mean) / std."""
    scale, offset = 1.0 / (255.0 * std), -mean / std
    if np.all(scale == scale[0]) and np.all(offset == offset[0]):
        return dict(scale=float(scale[0]), offset=float(offset[0]))
    return dict(scale=scale.tolist(), offset=offset.tolist())


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
