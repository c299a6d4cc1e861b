"""Pretrained Mixer weights: the table of every public checkpoint, how a
`weights=` argument resolves, and strict loading.

Every source is converted to the authors' key table (`checkpoint_shapes`):
their `.npz` files keep their Flax keys (`MixerBlock_3/token_mixing/Dense_0/
kernel`, Keras layouts already); timm's Hugging Face repositories are mapped key
by key (PyTorch layouts transposed). Loading is strict: any missing, extra,
mis-shaped, non-float or non-finite tensor raises and names the file and key,
before a single variable is written (see `weight_files` for the readers).

Downloads: the authors' bucket through `keras.utils.get_file` (set
`KERAS_MIXER_WEIGHTS_URL` to a mirror URL or to a local directory laid out like
the bucket), Hugging Face through `huggingface_hub` (its cache and offline mode).
"""

import dataclasses
import os

import numpy as np

from keras_mixer import weight_files as files_lib

BASE_URL = "https://storage.googleapis.com/mixer_models/"
MIRROR_ENV = "KERAS_MIXER_WEIGHTS_URL"
CACHE_SUBDIR = "keras_mixer"
RESOLUTION = 224  # every released checkpoint was trained at 224x224
HF_PREFIX = "hf://"


def _bucket(*variants, folder):
    return {v: f"{folder}/Mixer-{v.replace('/', '_')}.npz" for v in variants}


# tag -> the checkpoint files it names, by variant: a path in the authors' bucket
# (BASE_URL) or a timm repository on Hugging Face. No hashes are published for
# any of these files, so none are checked (get_file's file_hash is passed through
# where one is known: FILE_HASHES). docs/weights.md tells each file's provenance.
CHECKPOINTS = {
    "imagenet": dict(
        description="ImageNet-1k classifier: the authors' from-scratch files for B/16 and "
                    "L/16 (paper: 76.44 / 71.76 top-1), their GSAM-trained files otherwise",
        classes=1000,
        files={**_bucket("B/16", "L/16", folder="imagenet1k"),
               **_bucket("S/32", "S/16", "S/8", "B/32", folder="gsam")},
    ),
    "imagenet21k": dict(
        description="ImageNet-21k pre-training, 21,843-class head, not fine-tuned on 1k",
        classes=21843, files=_bucket("B/16", "L/16", folder="imagenet21k"),
    ),
    "imagenet_sam": dict(
        description="ImageNet-1k, trained with SAM", classes=1000,
        files=_bucket("B/16", "B/32", folder="sam"),
    ),
    "imagenet_gsam": dict(
        description="ImageNet-1k, trained with GSAM", classes=1000,
        files=_bucket("B/16", "B/32", "S/16", "S/32", "S/8", folder="gsam"),
    ),
    "imagenet_miil": dict(
        description="Alibaba MIIL: ImageNet-21K-P pre-training, fine-tuned on ImageNet-1k "
                    "in PyTorch (exact GELU; timm: 82.3 top-1)",
        classes=1000, files={"B/16": "hf://timm/mixer_b16_224.miil_in21k_ft_in1k"},
    ),
    "imagenet21k_miil": dict(
        description="Alibaba MIIL: ImageNet-21K-P (winter21, 11,221 classes), not fine-tuned",
        classes=11221, files={"B/16": "hf://timm/mixer_b16_224.miil_in21k"},
    ),
}
# timm's copies of the authors' files, named when the bucket cannot be reached.
HF_COPIES = {
    "imagenet1k/Mixer-B_16.npz": "timm/mixer_b16_224.goog_in21k_ft_in1k",
    "imagenet1k/Mixer-L_16.npz": "timm/mixer_l16_224.goog_in21k_ft_in1k",
    "imagenet21k/Mixer-B_16.npz": "timm/mixer_b16_224.goog_in21k",
    "imagenet21k/Mixer-L_16.npz": "timm/mixer_l16_224.goog_in21k",
}
# get_file hashes (sha256) of files whose content the project has seen; none yet.
FILE_HASHES = {}
ARRAY_KINDS = ("tag", "npz", "hf")  # sources read into the authors' key table
_TOKEN_KEY = "MixerBlock_0/token_mixing/Dense_0/kernel"


@dataclasses.dataclass
class WeightsSource:
    """What `weights=` resolved to, before any large download."""

    name: str  # how messages refer to it: the tag or the path
    kind: str  # "none", "tag" (bucket .npz), "npz", "hf" (timm repo) or "keras"
    tag: str = None
    variant: str = None
    path: str = None  # local file, or a timm repository's local directory
    repo: str = None  # a Hugging Face repository, fetched on load
    bucket_file: str = None  # for "tag": the file in the authors' bucket
    classes: int = None  # head size of the checkpoint, if known
    resolution: tuple = (RESOLUTION, RESOLUTION)
    gelu_form: str = "tanh"
    preprocessing: dict = dataclasses.field(
        default_factory=lambda: dict(scale=1 / 127.5, offset=-1.0))
    tokens_mlp_dim: int = None  # "keras": a tiled model's token MLP width

    @property
    def pretrained(self):
        return self.kind != "none"


def available_tags(variant):
    if not isinstance(variant, str):  # custom configs have no released weights
        return []
    return [t for t, c in CHECKPOINTS.items() if variant in c["files"]]


def resolve_weights(weights, variant):
    """Checks `weights=` and says where it points; downloads at most a config.json."""
    if weights is None:
        return WeightsSource(name="None", kind="none")
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    allowed = [None, *available_tags(variant), "hf://OWNER/REPO",
               "a path to a .npz, .weights.h5 or .keras file or a timm repository directory"]
    if not isinstance(weights, str):
        raise ValueError(f"weights: expected one of {allowed}; got {weights!r}")
    if weights in CHECKPOINTS:
        if weights not in available_tags(variant):
            raise ValueError(
                f"weights: {weights!r} is not available for Mixer {variant}; "
                f"expected one of {allowed}")
        where = CHECKPOINTS[weights]["files"][variant]
        if where.startswith(HF_PREFIX):
            return _hf_source(where, variant, name=repr(weights), tag=weights)
        return WeightsSource(name=repr(weights), kind="tag", tag=weights, variant=variant,
                             bucket_file=where, classes=CHECKPOINTS[weights]["classes"])
    if weights.startswith(HF_PREFIX):
        return _hf_source(weights, variant, name=repr(weights))
    weights = os.path.expanduser(weights)
    if os.path.isdir(weights):
        return _hf_source(weights, variant, name=repr(weights))
    if not weights.endswith((".npz", ".weights.h5", ".keras")):
        raise ValueError(f"weights: expected one of {allowed}; got {weights!r}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights: no such file: {weights!r}")
    if not weights.endswith(".npz"):
        from keras_mixer import keras_weights

        return keras_weights.source(weights, WeightsSource)
    headers = files_lib.npz_headers(weights)  # headers only: arrays are read once, later
    return WeightsSource(
        name=repr(weights), kind="npz", path=weights, variant=variant,
        classes=headers["head/kernel"][0][-1] if "head/kernel" in headers else None,
        resolution=_native_resolution({k: s for k, (s, _) in headers.items()}, weights))


def _hf_source(where, variant, *, name, tag=None):
    """A timm repository: `hf://OWNER/REPO` or a local directory like one."""
    if where.startswith(HF_PREFIX):
        repo = where[len(HF_PREFIX):]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"weights: expected hf://OWNER/REPO; got {where!r}")
        config_path, path = files_lib.hf_download(repo, "config.json"), None
    else:
        repo, path = None, where
        config_path = os.path.join(where, "config.json")
        missing = [f for f in ("config.json", "model.safetensors")
                   if not os.path.isfile(os.path.join(where, f))]
        if missing:
            raise FileNotFoundError(
                f"weights: directory {where!r} lacks {missing}; expected a timm "
                f"repository snapshot (config.json and model.safetensors)")
    info = files_lib.read_timm_config(config_path)
    letter, patch = info["variant"]
    if variant != f"{letter}/{patch}":
        raise ValueError(
            f"weights: {name} holds a Mixer {letter}/{patch}; got variant {variant!r}")
    return WeightsSource(
        name=name, kind="hf", tag=tag, variant=variant, path=path, repo=repo,
        classes=info["classes"], resolution=info["resolution"],
        gelu_form=info["gelu_form"],
        preprocessing=dict(info["preprocessing"], crop_fraction=info["crop_fraction"],
                           interpolation=info["interpolation"]))


def _native_resolution(shapes, path):
    """Side of the images a checkpoint was trained on: token grid x patch."""
    if _TOKEN_KEY not in shapes or "stem/kernel" not in shapes:
        return (RESOLUTION, RESOLUTION)  # the key check will name what is missing
    tokens, patch = shapes[_TOKEN_KEY][0], shapes["stem/kernel"][0]
    side = int(round(tokens ** 0.5))
    if side * side != tokens:
        raise ValueError(
            f"weights: {path!r} has {tokens} tokens per image, not a square grid; "
            "its training resolution cannot be inferred"
        )
    return (side * patch, side * patch)


def resolution_factors(source, input_shape):
    """Integer (K_h, K_w) with input = K x the checkpoint's size, else raises."""
    (height, width), (base_h, base_w) = input_shape[:2], source.resolution
    if height % base_h or width % base_w:
        raise ValueError(
            f"input_shape: with weights={source.name} (trained at {base_h}x{base_w}) "
            f"height and width must be integer multiples of {base_h}x{base_w} "
            f"(block-diagonal token-mixing init, paper Appendix C); got {tuple(input_shape)}"
        )
    return height // base_h, width // base_w


def checkpoint_shapes(config, num_tokens, classes, include_top=True):
    """The checkpoint's key table for a config: {npz key: shape}, in order."""
    c, patch = config["hidden_dim"], config["patch_size"]
    d_s, d_c = config["tokens_mlp_dim"], config["channels_mlp_dim"]
    shapes = {"stem/kernel": (patch, patch, 3, c), "stem/bias": (c,)}
    for i in range(config["num_blocks"]):
        block = f"MixerBlock_{i}"
        for name, (d_in, d_hidden) in (("token_mixing", (num_tokens, d_s)),
                                       ("channel_mixing", (c, d_c))):
            shapes[f"{block}/{name}/Dense_0/kernel"] = (d_in, d_hidden)
            shapes[f"{block}/{name}/Dense_0/bias"] = (d_hidden,)
            shapes[f"{block}/{name}/Dense_1/kernel"] = (d_hidden, d_in)
            shapes[f"{block}/{name}/Dense_1/bias"] = (d_in,)
        for norm in ("LayerNorm_0", "LayerNorm_1"):
            shapes[f"{block}/{norm}/scale"] = (c,)
            shapes[f"{block}/{norm}/bias"] = (c,)
    shapes["pre_head_layer_norm/scale"] = (c,)
    shapes["pre_head_layer_norm/bias"] = (c,)
    if include_top:
        shapes["head/kernel"] = (c, classes)
        shapes["head/bias"] = (classes,)
    return shapes


def load_checkpoint(source, config, *, include_top, cache_dir=None):
    """Fetches and strictly reads a checkpoint into the authors' key table."""
    patch = config["patch_size"]
    tokens = (source.resolution[0] // patch) * (source.resolution[1] // patch)
    if source.kind == "hf":
        directory = source.path
        path = (os.path.join(directory, "model.safetensors") if directory
                else files_lib.hf_download(source.repo, "model.safetensors"))
        headers = files_lib.safetensors_headers(path)
        table = files_lib.timm_to_authors_keys(config["num_blocks"])
        # Known timm keys are renamed; unknown ones stay and are refused as extra.
        renamed = {table.get(k, (k, None))[0]: (k, table.get(k, (k, None))[1]) for k in headers}
        headers = {ours: _transposed(headers[k], t) for ours, (k, t) in renamed.items()}
        headers = {k: (s, files_lib.st_dtype_name(d)) for k, (s, d) in headers.items()}
        expected = _check_headers(source, path, headers, config, tokens, include_top)
        raw = files_lib.read_safetensors(path, [renamed[k][0] for k in expected])
        arrays = {k: _transpose(raw[renamed[k][0]], renamed[k][1]) for k in expected}
    else:
        path = source.path or get_weights_file(source.tag, source.variant, cache_dir=cache_dir)
        headers = files_lib.npz_headers(path)
        expected = _check_headers(source, path, headers, config, tokens, include_top)
        arrays = files_lib.read_npz(path, list(expected))
    bad = [k for k, a in arrays.items() if not np.all(np.isfinite(a))]
    if bad:
        raise ValueError(f"weights: {path!r} has NaN or Inf values in {len(bad)} tensor(s), "
                         f"e.g. {bad[:3]}; nothing was loaded")
    return arrays


def _transposed(header, axes):
    shape, dtype = header
    return (tuple(shape[a] for a in axes) if axes else shape), dtype


def _transpose(array, axes):
    return np.ascontiguousarray(array.transpose(axes)) if axes else array


def _check_headers(source, path, headers, config, tokens, include_top):
    """{key: shape} expected; raises naming the file and keys unless every
    expected key is present, float and of the right shape, and no other is."""
    head = headers.get("head/kernel")
    classes = head[0][-1] if head and len(head[0]) == 2 else source.classes
    expected = checkpoint_shapes(config, tokens, classes, include_top)
    ignored = {"head/kernel", "head/bias"} if not include_top else set()
    missing = [k for k in expected if k not in headers]
    extra = sorted(k for k in headers if k not in expected and k not in ignored)
    wrong = [(k, headers[k][0], s) for k, s in expected.items()
             if k in headers and tuple(headers[k][0]) != s]
    dtypes = [(k, headers[k][1]) for k in expected
              if k in headers and headers[k][1] not in files_lib.FLOAT_DTYPES]
    if missing or extra or wrong or dtypes:
        parts = []
        if wrong:
            key, got, want = wrong[0]
            parts.append(f"{len(wrong)} mis-shaped, first {key!r}: checkpoint {tuple(got)}, "
                         f"model {want} (a checkpoint of another variant?)")
        if dtypes:
            parts.append(f"{len(dtypes)} not floating point, first {dtypes[0][0]!r}: "
                         f"{dtypes[0][1]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} unexpected, e.g. {extra[:3]}")
        where = "" if source.name == repr(path) else f" ({path})"
        raise ValueError(f"weights: {source.name}{where} does not match this Mixer; "
                         f"nothing was loaded: " + "; ".join(parts))
    return expected


def get_weights_file(tag, variant, *, cache_dir=None):
    """Local path of a released `.npz`, downloading it on first use."""
    relative = CHECKPOINTS[tag]["files"][variant]
    mirror = os.environ.get(MIRROR_ENV, "")
    if mirror and "://" not in mirror:  # a local directory with the bucket's layout
        path = os.path.join(mirror, relative)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{MIRROR_ENV}={mirror!r} is a directory, but {relative!r} is not in it "
                f"(expected {path!r}); copy {BASE_URL}{relative} there")
        return path
    origin = (mirror.rstrip("/") + "/" if mirror else BASE_URL) + relative
    fname = relative.replace("/", "_")
    try:
        return files_lib.fetch_url(origin, fname, cache_dir=cache_dir, cache_subdir=CACHE_SUBDIR,
                                   file_hash=FILE_HASHES.get(relative),
                                   check=files_lib.npz_headers)
    except Exception as err:  # get_file raises bare Exception on URL errors
        cache_root = cache_dir or os.environ.get(
            "KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        target = os.path.join(cache_root, CACHE_SUBDIR, fname)
        copy = HF_COPIES.get(relative)
        hint = f", or pass weights='hf://{copy}' (timm's copy)" if copy else ""
        raise OSError(
            f"weights: could not download the {tag!r} checkpoint of Mixer {variant} "
            f"from {origin} ({err}). Without network, fetch that file elsewhere and "
            f"put it at {target}, or set {MIRROR_ENV} to a directory holding "
            f"{relative}{hint}.") from err


def checkpoint_variables(model):
    """{npz key: keras variable} for every weight of a Mixer model."""
    table = {}
    for layer in model.layers:
        if layer.name in ("stem", "head"):
            table[f"{layer.name}/kernel"] = layer.kernel
            table[f"{layer.name}/bias"] = layer.bias
        elif layer.name == "pre_head_layer_norm":
            table.update(_norm_keys(layer.name, layer))
        elif layer.name.startswith("MixerBlock_"):
            for norm in (layer.layer_norm_0, layer.layer_norm_1):
                table.update(_norm_keys(f"{layer.name}/{norm.name}", norm))
            for mlp in (layer.token_mixing, layer.channel_mixing):
                for dense in (mlp.dense_0, mlp.dense_1):
                    prefix = f"{layer.name}/{mlp.name}/{dense.name}"
                    table[f"{prefix}/kernel"] = dense.kernel
                    table[f"{prefix}/bias"] = dense.bias
    if len(table) != len(model.weights):
        raise ValueError(
            f"model: {model.name!r} is not a Mixer built by keras_mixer "
            f"({len(model.weights)} weights, {len(table)} with checkpoint names)"
        )
    return table


def _norm_keys(prefix, norm):
    return {f"{prefix}/scale": norm.gamma, f"{prefix}/bias": norm.beta}


def assign_checkpoint(model, arrays, factors=(1, 1)):
    """Writes checked arrays into the model; tiles token MLPs for K x resolution."""
    variables = checkpoint_variables(model)
    if factors != (1, 1):
        num_tokens = model.get_layer("MixerBlock_0").num_tokens
        arrays = tile_token_mixing(arrays, factors, num_tokens)
    values = {}
    for key, variable in variables.items():
        if key not in arrays:  # head of an include_top=False model has no variable
            raise ValueError(f"weights: no array for {key!r}; nothing was loaded")
        array = np.asarray(arrays[key])
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"weights: {key!r} has shape {array.shape}, model needs "
                f"{tuple(variable.shape)}; nothing was loaded"
            )
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
            raise ValueError(f"weights: {key!r} is not finite floating point ({array.dtype}); "
                             f"nothing was loaded")
        values[key] = array.astype(variable.dtype)  # every cast before the first write
    for key, variable in variables.items():  # all checked: now write
        variable.assign(values[key])


def tile_token_mixing(arrays, factors, num_tokens):
    """The paper's high-resolution init (Appendix C), for contiguous tiles.

    The (K_h * g_h) x (K_w * g_w) token grid is split into K_h x K_w tiles of
    g_h x g_w tokens. The new token MLP is block-diagonal: hidden units
    [t * D_S, (t+1) * D_S) see only tile t's tokens, through copies of the
    pre-trained weights, so each tile is mixed exactly as one image at the
    checkpoint's resolution would be. Row-major token order makes the blocks
    scattered, hence the index maps below.
    """
    k_h, k_w = factors
    tiles = k_h * k_w
    old_tokens = num_tokens // tiles
    any_kernel = next(v for k, v in arrays.items() if k.endswith("token_mixing/Dense_0/kernel"))
    g = int(round(old_tokens ** 0.5))  # the checkpoint's grid is square
    if g * g != old_tokens or any_kernel.shape[0] != old_tokens:
        raise ValueError(f"weights: cannot tile {any_kernel.shape[0]} tokens by {factors}")
    rows, cols = np.divmod(np.arange(num_tokens), k_w * g)
    tile = (rows // g) * k_w + cols // g  # which tile each new token lies in
    local = (rows % g) * g + cols % g  # its index inside that tile
    out = dict(arrays)
    for key in arrays:
        if "token_mixing/Dense_0" in key and key.endswith("kernel"):
            w0 = arrays[key]  # (S, D_S)
            d_s = w0.shape[1]
            new = np.zeros((num_tokens, tiles * d_s), w0.dtype)
            for t in range(tiles):
                new[tile == t, t * d_s:(t + 1) * d_s] = w0[local[tile == t]]
            out[key] = new
        elif "token_mixing/Dense_0" in key:
            out[key] = np.tile(arrays[key], tiles)
        elif "token_mixing/Dense_1" in key and key.endswith("kernel"):
            w1 = arrays[key]  # (D_S, S)
            d_s = w1.shape[0]
            new = np.zeros((tiles * d_s, num_tokens), w1.dtype)
            for t in range(tiles):
                new[t * d_s:(t + 1) * d_s, tile == t] = w1[:, local[tile == t]]
            out[key] = new
        elif "token_mixing/Dense_1" in key:
            out[key] = arrays[key][local]
    return out


def infer_variant(shapes, variants):
    """The paper's name ("B/16") of a checkpoint's {key: shape}, else its config dict."""
    needed = ("stem/kernel", _TOKEN_KEY, "MixerBlock_0/channel_mixing/Dense_0/kernel")
    missing = [k for k in needed if k not in shapes]
    if missing:
        raise ValueError(f"weights: not a Mixer checkpoint; missing keys {missing}")
    patch, _, _, hidden = shapes["stem/kernel"]
    blocks = 0
    while f"MixerBlock_{blocks}/LayerNorm_0/scale" in shapes:
        blocks += 1
    config = dict(
        num_blocks=blocks, patch_size=int(patch), hidden_dim=int(hidden),
        tokens_mlp_dim=int(shapes[_TOKEN_KEY][1]),
        channels_mlp_dim=int(shapes[needed[2]][1]),
    )
    return next((name for name, c in variants.items() if c == config), config)
