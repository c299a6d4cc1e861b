"""The authors' checkpoints: where they are, how they download, how they load.

The released files are flat NumPy `.npz` archives whose keys are Flax parameter
paths (`MixerBlock_3/token_mixing/Dense_0/kernel`). Kernels are already in
Keras layout (HWIO conv, (in, out) dense), so loading is an explicit key table
plus strict checks: any missing, extra or mis-shaped key raises and names the
key, before a single variable is written.

Downloads go through `keras.utils.get_file` (cache, progress bar). Set
`KERAS_MIXER_WEIGHTS_URL` to a mirror URL or to a local directory laid out like
the bucket (`imagenet1k/Mixer-B_16.npz`, ...) for air-gapped machines.
"""

import dataclasses
import os
import zipfile

import numpy as np

BASE_URL = "https://storage.googleapis.com/mixer_models/"
MIRROR_ENV = "KERAS_MIXER_WEIGHTS_URL"
CACHE_SUBDIR = "keras_mixer"
RESOLUTION = 224  # every released checkpoint was trained at 224x224

# tag -> what the file really is, its head size, and its file per variant.
# No checksums are published by the authors, so none are checked.
CHECKPOINTS = {
    "imagenet": dict(
        description="ImageNet-1k, trained from scratch on ImageNet-1k (paper: B/16 76.44 top-1)",
        classes=1000,
        files={"B/16": "imagenet1k/Mixer-B_16.npz", "L/16": "imagenet1k/Mixer-L_16.npz"},
    ),
    "imagenet21k": dict(
        description="ImageNet-21k pre-training, 21,843-class head, not fine-tuned on 1k",
        classes=21843,
        files={"B/16": "imagenet21k/Mixer-B_16.npz", "L/16": "imagenet21k/Mixer-L_16.npz"},
    ),
    "imagenet_sam": dict(
        description="ImageNet-1k, trained with SAM",
        classes=1000,
        files={"B/16": "sam/Mixer-B_16.npz", "B/32": "sam/Mixer-B_32.npz"},
    ),
    "imagenet_gsam": dict(
        description="ImageNet-1k, trained with GSAM",
        classes=1000,
        files={v: f"gsam/Mixer-{v.replace('/', '_')}.npz"
               for v in ("B/16", "B/32", "S/16", "S/32", "S/8")},
    ),
}
WEIGHT_FILE_SUFFIXES = (".npz", ".weights.h5")
_TOKEN_KEY = "MixerBlock_0/token_mixing/Dense_0/kernel"


@dataclasses.dataclass
class WeightsSource:
    """What `weights=` resolved to, before any download."""

    name: str  # how messages refer to it: the tag or the path
    kind: str  # "none", "tag", "npz" or "h5"
    tag: str = None
    variant: str = None  # for tags: which file of the tag
    path: str = None
    classes: int = None  # head size of the checkpoint, if known
    resolution: tuple = (RESOLUTION, RESOLUTION)

    @property
    def pretrained(self):
        return self.kind != "none"


def available_tags(variant):
    if not isinstance(variant, str):  # custom configs have no released weights
        return []
    return [t for t, c in CHECKPOINTS.items() if variant in c["files"]]


def resolve_weights(weights, variant):
    """Checks `weights=` and says where it points; downloads nothing."""
    if weights is None:
        return WeightsSource(name="None", kind="none")
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(f"weights: expected None, a tag or a file path; got {weights!r}")
    if weights in CHECKPOINTS:
        if weights not in available_tags(variant):
            allowed = [None, *available_tags(variant), "a path to a .npz or .weights.h5 file"]
            raise ValueError(
                f"weights: {weights!r} is not available for Mixer {variant}; "
                f"expected one of {allowed}"
            )
        return WeightsSource(
            name=repr(weights), kind="tag", tag=weights, variant=variant,
            classes=CHECKPOINTS[weights]["classes"],
        )
    if not weights.endswith(WEIGHT_FILE_SUFFIXES):
        allowed = [None, *available_tags(variant), "a path ending in .npz or .weights.h5"]
        raise ValueError(f"weights: expected one of {allowed}; got {weights!r}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights: no such file: {weights!r}")
    if weights.endswith(".weights.h5"):
        return WeightsSource(name=repr(weights), kind="h5", path=weights)
    shapes = npz_shapes(weights)  # headers only: the arrays are read once, later
    return WeightsSource(
        name=repr(weights), kind="npz", path=weights,
        classes=shapes["head/kernel"][-1] if "head/kernel" in shapes else None,
        resolution=_native_resolution(shapes, weights),
    )


def read_npz(path):
    """Reads every array of an `.npz` (no pickles), or raises naming the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _unreadable(path, err) from err


def npz_shapes(path):
    """{key: shape} of an `.npz` from its array headers, without reading the data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        shapes = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in readers:
                        raise ValueError(f"unsupported .npy format version {version} in {name!r}")
                    shapes[name.removesuffix(".npy")] = readers[version](member)[0]
        return shapes
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _unreadable(path, err) from err


def _unreadable(path, err):
    return ValueError(
        f"weights: {path!r} is not a readable .npz checkpoint "
        f"(truncated download or another format?): {err}"
    )


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


def load_checkpoint(source, config, include_top, cache_dir=None):
    """Downloads (tags) and reads a checkpoint, then checks every key and shape."""
    path = source.path or get_weights_file(source.tag, source.variant, cache_dir)
    arrays = read_npz(path)
    patch = config["patch_size"]
    tokens = (source.resolution[0] // patch) * (source.resolution[1] // patch)
    classes = arrays["head/kernel"].shape[-1] if "head/kernel" in arrays else source.classes
    expected = checkpoint_shapes(config, tokens, classes, include_top)
    ignored = {"head/kernel", "head/bias"} if not include_top else set()
    missing = [k for k in expected if k not in arrays]
    extra = sorted(k for k in arrays if k not in expected and k not in ignored)
    wrong = [(k, arrays[k].shape, s) for k, s in expected.items()
             if k in arrays and tuple(arrays[k].shape) != s]
    if missing or extra or wrong:
        parts = []
        if wrong:
            key, got, want = wrong[0]
            parts.append(
                f"{len(wrong)} mis-shaped, first {key!r}: checkpoint {tuple(got)}, "
                f"model {want} (a checkpoint of another variant?)"
            )
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} unexpected, e.g. {extra[:3]}")
        raise ValueError(
            f"weights: {source.name} does not match this Mixer; nothing was loaded: "
            + "; ".join(parts)
        )
    return {k: arrays[k] for k in expected}


def get_weights_file(tag, variant, cache_dir=None):
    """Local path of a released checkpoint, downloading it on first use."""
    relative = CHECKPOINTS[tag]["files"][variant]
    mirror = os.environ.get(MIRROR_ENV, "")
    if mirror and "://" not in mirror:  # a local directory with the bucket's layout
        path = os.path.join(mirror, relative)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{MIRROR_ENV}={mirror!r} is a directory, but {relative!r} is not in it "
                f"(expected {path!r}); copy {BASE_URL}{relative} there"
            )
        return path
    origin = (mirror.rstrip("/") + "/" if mirror else BASE_URL) + relative
    fname = relative.replace("/", "_")
    if cache_dir is not None:  # get_file silently falls back to /tmp if it is missing
        os.makedirs(cache_dir, exist_ok=True)
    import keras

    try:
        return keras.utils.get_file(
            fname, origin=origin, cache_subdir=CACHE_SUBDIR, cache_dir=cache_dir
        )
    except Exception as err:  # get_file raises bare Exception on URL errors
        cache_root = cache_dir or os.environ.get(
            "KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")
        )
        target = os.path.join(cache_root, CACHE_SUBDIR, fname)
        raise OSError(
            f"weights: could not download the {tag!r} checkpoint of Mixer {variant} "
            f"from {origin} ({err}). Without network, fetch that file elsewhere and "
            f"put it at {target}, or set {MIRROR_ENV} to a directory holding "
            f"{relative}."
        ) from err


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
        if tuple(arrays[key].shape) != tuple(variable.shape):
            raise ValueError(
                f"weights: {key!r} has shape {arrays[key].shape}, model needs "
                f"{tuple(variable.shape)}; nothing was loaded"
            )
        values[key] = arrays[key]
    for key, variable in variables.items():  # all checked: now write
        variable.assign(values[key].astype(variable.dtype))


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
