"""The authors' key table, the strict check against it, and writing it into a model.

Every format is read into this table (`MixerBlock_3/token_mixing/Dense_0/
kernel`, Keras layouts): one check, one assignment, one high-resolution tiling,
whatever the file was.
"""

import numpy as np

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
TOKEN_KEY = "MixerBlock_0/token_mixing/Dense_0/kernel"


def unreadable(path, err):
    return ValueError(
        f"weights: {path!r} is not a readable checkpoint (truncated download or "
        f"another format?): {err}")


def checkpoint_shapes(config, num_tokens, classes, include_top=True):
    """The checkpoint's key table for a config: {key: shape}, in order."""
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


def native_resolution(shapes, path, *, square_only=True):
    """Side of the images a checkpoint was trained on: token grid x patch.

    {key: shape} in the authors' table. A token count that is not a square
    grid raises, or (square_only=False) gives None: the model's size decides.
    """
    if TOKEN_KEY not in shapes or "stem/kernel" not in shapes:
        return None  # the key check will name what is missing
    tokens, patch = shapes[TOKEN_KEY][0], shapes["stem/kernel"][0]
    side = int(round(tokens ** 0.5))
    if side * side != tokens:
        if not square_only:
            return None
        raise ValueError(
            f"weights: {path!r} has {tokens} tokens per image, not a square grid; "
            "its training resolution cannot be inferred")
    return (side * patch, side * patch)


def resolution_factors(source, input_shape):
    """Integer (K_h, K_w) with input = K x the checkpoint's size, else raises."""
    if source.resolution is None:
        return 1, 1
    (height, width), (base_h, base_w) = input_shape[:2], source.resolution
    if height % base_h or width % base_w:
        raise ValueError(
            f"input_shape: with weights={source.name} (trained at {base_h}x{base_w}) "
            f"height and width must be integer multiples of {base_h}x{base_w} "
            f"(block-diagonal token-mixing init, paper Appendix C); got {tuple(input_shape)}")
    return height // base_h, width // base_w


def check_headers(source, path, headers, expected, *, include_top, file_key=None):
    """Raises naming the file and keys unless every `expected` key ({key: shape})
    is in `headers` ({key: (shape, dtype name)}), float and of its shape, and
    no other key is. `file_key(key)` gives the file's own name of one of our
    keys (timm's `blocks.3.mlp_tokens.fc2.bias`), named beside ours."""
    ignored = {"head/kernel", "head/bias"} if not include_top else set()
    missing = [k for k in expected if k not in headers]
    extra = sorted(k for k in headers if k not in expected and k not in ignored)
    wrong = [(k, headers[k][0], s) for k, s in expected.items()
             if k in headers and tuple(headers[k][0]) != s]
    dtypes = [(k, headers[k][1]) for k in expected
              if k in headers and headers[k][1] not in FLOAT_DTYPES]
    if not (missing or extra or wrong or dtypes):
        return

    def named(keys):
        if file_key is None:
            return repr(keys[:3])
        return "[" + ", ".join(
            repr(k) if file_key(k) == k else f"{file_key(k)!r} ({k!r})" for k in keys[:3]) + "]"

    parts = []
    if wrong:
        key, got, want = wrong[0]
        parts.append(f"{len(wrong)} mis-shaped, first {named([key])[1:-1]}: checkpoint "
                     f"{tuple(got)}, model {want} (a checkpoint of another variant?)")
    if dtypes:
        parts.append(f"{len(dtypes)} not floating point, first {named([dtypes[0][0]])[1:-1]}: "
                     f"{dtypes[0][1]}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {named(missing)}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {named(extra)}")
    where = "" if source.name == repr(path) else f" ({path})"
    raise ValueError(f"weights: {source.name}{where} does not match this Mixer; "
                     f"nothing was loaded: " + "; ".join(parts))


def check_finite(path, arrays):
    bad = [k for k, a in arrays.items() if not np.all(np.isfinite(a))]
    if bad:
        raise ValueError(f"weights: {path!r} has NaN or Inf values in {len(bad)} tensor(s), "
                         f"e.g. {bad[:3]}; nothing was loaded")
    return arrays


def checkpoint_variables(model):
    """{checkpoint key: keras variable} for every weight of a Mixer model."""
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
            f"({len(model.weights)} weights, {len(table)} with checkpoint names)")
    return table


def _norm_keys(prefix, norm):
    return {f"{prefix}/scale": norm.gamma, f"{prefix}/bias": norm.beta}


def assign_checkpoint(model, arrays, factors=(1, 1)):
    """Writes checked arrays into the model; tiles token MLPs for K x resolution."""
    variables = checkpoint_variables(model)
    if tuple(factors) != (1, 1):
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
                f"{tuple(variable.shape)}; nothing was loaded")
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
    needed = ("stem/kernel", TOKEN_KEY, "MixerBlock_0/channel_mixing/Dense_0/kernel")
    missing = [k for k in needed if k not in shapes]
    if missing:
        raise ValueError(f"weights: not a Mixer checkpoint; missing keys {missing}")
    patch, _, _, hidden = shapes["stem/kernel"]
    blocks = 0
    while f"MixerBlock_{blocks}/LayerNorm_0/scale" in shapes:
        blocks += 1
    config = dict(
        num_blocks=blocks, patch_size=int(patch), hidden_dim=int(hidden),
        tokens_mlp_dim=int(shapes[TOKEN_KEY][1]),
        channels_mlp_dim=int(shapes[needed[2]][1]),
    )
    return next((name for name, c in variants.items() if c == config), config)
