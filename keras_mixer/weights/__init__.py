"""Pretrained Mixer weights: one dispatcher over one module per file format.

    source = resolve_weights("imagenet", "B/16")     # checks; downloads at most a config.json
    arrays = load_checkpoint(source, config, include_top=True)   # {authors' key: array}
    assign_checkpoint(model, arrays, factors)        # every write after every check

A `weights=` argument resolves to a `WeightsSource` whose `kind`
(`SourceKind`) names its format module:
  TAG, NPZ  `npz`         the authors' `.npz` (a tag downloads it: `download`)
  TIMM      `timm`        timm's repositories (hf://OWNER/REPO or a local directory)
  KERAS     `keras_file`  `.weights.h5` / `.keras` files of keras-mixer models
Each module reads headers first and arrays second, into the authors' key
table (`checkpoint`), where one strict check refuses any missing, extra,
mis-shaped, non-float or non-finite tensor, naming the file and the key in
the file's own naming and ours, before a single variable is written.
"""

import os

from keras_mixer.weights import checkpoint, download, keras_file, npz, timm
from keras_mixer.weights.checkpoint import (assign_checkpoint, checkpoint_shapes,  # noqa: F401
                                            checkpoint_variables, infer_variant,
                                            resolution_factors, tile_token_mixing)
from keras_mixer.weights.download import get_weights_file  # noqa: F401
from keras_mixer.weights.source import RESOLUTION, SourceKind, WeightsSource  # noqa: F401
from keras_mixer.weights.table import (BASE_URL, CACHE_SUBDIR, CHECKPOINTS,  # noqa: F401
                                       FILE_HASHES, HF_COPIES, HF_PREFIX, MIRROR_ENV,
                                       available_tags)

# The format module of each kind of pretrained source.
FORMATS = {SourceKind.TAG: npz, SourceKind.NPZ: npz, SourceKind.TIMM: timm,
           SourceKind.KERAS: keras_file}
if set(FORMATS) != set(SourceKind) - {SourceKind.NONE}:
    raise ImportError(f"weights.FORMATS misses a SourceKind: {set(SourceKind) - set(FORMATS)}")


def resolve_weights(weights, variant):
    """Checks `weights=` and says where it points; downloads at most a config.json."""
    if weights is None:
        return WeightsSource(name="None", kind=SourceKind.NONE)
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
            return timm.source(where, variant, name=repr(weights), tag=weights)
        return WeightsSource(name=repr(weights), kind=SourceKind.TAG, tag=weights,
                             variant=variant, bucket_file=where,
                             classes=CHECKPOINTS[weights]["classes"])
    if weights.startswith(HF_PREFIX):
        return timm.source(weights, variant, name=repr(weights))
    weights = os.path.expanduser(weights)
    if os.path.isdir(weights):
        return timm.source(weights, variant, name=repr(weights))
    if not weights.endswith((".npz", *keras_file.SUFFIXES)):
        raise ValueError(f"weights: expected one of {allowed}; got {weights!r}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights: no such file: {weights!r}")
    if weights.endswith(".npz"):
        return npz.source(weights, variant)
    return keras_file.source(weights)


def load_checkpoint(source, config, *, include_top, cache_dir=None):
    """Fetches and strictly reads a checkpoint into the authors' key table:
    {key: array} for a Mixer of `config` (its own token-MLP width) at the
    checkpoint's resolution."""
    module = FORMATS[source.kind]
    path, headers, file_key = module.headers(source, cache_dir=cache_dir)
    patch = config["patch_size"]
    if source.resolution is not None:
        tokens = -(-source.resolution[0] // patch) * -(-source.resolution[1] // patch)
    else:  # a Keras file of a non-square grid: its own count (the model's is checked later)
        tokens = headers.get(checkpoint.TOKEN_KEY, ((0,),))[0][0]
    head = headers.get("head/kernel")
    classes = head[0][-1] if head and len(head[0]) == 2 else source.classes
    expected = checkpoint.checkpoint_shapes(config, tokens, classes, include_top)
    checkpoint.check_headers(source, path, headers, expected, include_top=include_top,
                             file_key=file_key)
    return checkpoint.check_finite(path, module.read(source, path, list(expected)))
