"""MLP-Mixer models (Tolstikhin et al., 2021) with the keras.applications surface.

    model = keras_mixer.MixerB16(weights="imagenet")
    probs = model.predict(images)         # RGB, values 0-255; rescaling is inside

Layer names follow the authors' checkpoint (`stem`, `MixerBlock_{i}`,
`pre_head_layer_norm`, `head`), so `weights.py` maps keys one to one.
"""

import inspect

import keras

from keras_mixer import weights as weights_lib
from keras_mixer.layers import GELU_FORMS, LAYER_NORM_EPSILON, InputRescaling, MixerBlock

# Paper, Table 1. Parameter counts with a 1000-class head (pinned in the tests):
# S/32 19,104,624; S/16 18,528,264; S/8 20,646,504; B/32 60,293,428;
# B/16 59,880,472; L/32 206,939,264; L/16 208,196,168; H/14 432,350,952.
VARIANTS = {
    #       blocks, patch, hidden C, tokens MLP D_S, channels MLP D_C
    "S/32": dict(num_blocks=8, patch_size=32, hidden_dim=512, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "S/16": dict(num_blocks=8, patch_size=16, hidden_dim=512, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "S/8": dict(num_blocks=8, patch_size=8, hidden_dim=512, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "B/32": dict(num_blocks=12, patch_size=32, hidden_dim=768, tokens_mlp_dim=384, channels_mlp_dim=3072),
    "B/16": dict(num_blocks=12, patch_size=16, hidden_dim=768, tokens_mlp_dim=384, channels_mlp_dim=3072),
    "L/32": dict(num_blocks=24, patch_size=32, hidden_dim=1024, tokens_mlp_dim=512, channels_mlp_dim=4096),
    "L/16": dict(num_blocks=24, patch_size=16, hidden_dim=1024, tokens_mlp_dim=512, channels_mlp_dim=4096),
    "H/14": dict(num_blocks=32, patch_size=14, hidden_dim=1280, tokens_mlp_dim=640, channels_mlp_dim=5120),
}
CONFIG_KEYS = tuple(VARIANTS["B/16"])
DEFAULT_SIZE = 224
POOLINGS = (None, "avg", "max")


def Mixer(
    variant,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    *,
    dropout=0.0,
    drop_path_rate=0.0,
    gelu_form=None,
):
    """Builds an MLP-Mixer; see `MIXER_DOCSTRING` for the arguments."""
    # Every argument is checked before anything is downloaded or built.
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"image_data_format: Mixer supports 'channels_last' only (its tokens are "
            f"row-major patches); got keras.config.image_data_format()="
            f"{keras.config.image_data_format()!r}")
    config = resolve_variant(variant)
    source = weights_lib.resolve_weights(weights, variant)
    _check_options(include_top, pooling, dropout, drop_path_rate, gelu_form)
    if gelu_form is None:
        gelu_form = source.gelu_form
    input_shape = _input_shape(input_tensor, input_shape, source)
    grid = _token_grid(input_shape, config["patch_size"])
    if classes is None:
        classes = source.classes or 1000
    _check_head(classes, classifier_activation, include_top, source)
    factors, arrays = (1, 1), None
    if source.pretrained:
        factors = weights_lib.resolution_factors(source, input_shape)
        if source.tokens_mlp_dim:  # a Keras file: the width it was saved at (tiled or not)
            config["tokens_mlp_dim"] = source.tokens_mlp_dim
        arrays = weights_lib.load_checkpoint(source, config, include_top=include_top)
        # K_h x K_w tiles need K_h * K_w copies of the token MLP (Appendix C).
        config["tokens_mlp_dim"] *= factors[0] * factors[1]

    model = _build(
        config, grid, input_tensor, input_shape, include_top, pooling, classes,
        classifier_activation, dropout, drop_path_rate, gelu_form, source.preprocessing,
        name or _default_name(variant),
    )
    if arrays is not None:
        weights_lib.assign_checkpoint(model, arrays, factors)
    return model


def _build(
    config, grid, input_tensor, input_shape, include_top, pooling, classes,
    classifier_activation, dropout, drop_path_rate, gelu_form, preprocessing, name,
):
    hidden = config["hidden_dim"]
    if input_tensor is None:
        inputs = x = keras.Input(shape=input_shape, name="image")
    elif keras.backend.is_keras_tensor(input_tensor):
        sources = keras.utils.get_source_inputs(input_tensor)
        inputs, x = (sources[0] if len(sources) == 1 else sources), input_tensor
    else:
        inputs = x = keras.Input(tensor=input_tensor, shape=input_shape, name="image")
    # The checkpoint's own input normalization (RGB 0-255 in).
    x = InputRescaling(**preprocessing, name="rescaling")(x)
    x = mixer_trunk(x, config, grid, drop_path_rate=drop_path_rate, gelu_form=gelu_form)
    if include_top:
        # Pool after the final norm, as the checkpoints were trained.
        x = keras.layers.GlobalAveragePooling1D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(classes, kernel_initializer="zeros", name="head")(x)
        # float32 output keeps softmax and logits exact under mixed precision.
        x = keras.layers.Activation(
            classifier_activation, dtype="float32", name="predictions"
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling1D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling1D(name="max_pool")(x)
    else:
        x = keras.layers.Reshape((*grid, hidden), name="feature_map")(x)
    return keras.Model(inputs, x, name=name)


def mixer_trunk(x, config, grid, *, drop_path_rate=0.0, gelu_form="tanh"):
    """stem -> tokens -> MixerBlock_{i} -> pre_head_layer_norm on normalized
    images `x`: (batch, tokens, C). Shared by `Mixer` and keras-hub's
    `keras_mixer.hub.MixerBackbone`, so both compute one model."""
    num_blocks, hidden, patch = config["num_blocks"], config["hidden_dim"], config["patch_size"]
    num_tokens = grid[0] * grid[1]
    # "same" is the authors' padding; it equals "valid" when the size is a
    # multiple of the patch, and pads the last row/column of patches otherwise.
    x = keras.layers.Conv2D(
        hidden, patch, strides=patch, padding="same", name="stem",
        kernel_initializer="lecun_normal",
    )(x)
    x = keras.layers.Reshape((num_tokens, hidden), name="tokens")(x)
    for i in range(num_blocks):
        x = MixerBlock(
            num_tokens, hidden, config["tokens_mlp_dim"], config["channels_mlp_dim"],
            # Stochastic depth rises linearly from 0 (first block) to the rate (last).
            drop_path_rate=drop_path_rate * i / max(num_blocks - 1, 1),
            gelu_form=gelu_form,
            name=f"MixerBlock_{i}",
        )(x)
    return keras.layers.LayerNormalization(
        epsilon=LAYER_NORM_EPSILON, name="pre_head_layer_norm"
    )(x)


def feature_extractor(model, *, blocks=None, pre_logits=True):
    """A model with the same weights whose outputs are intermediate features.

    Returns `keras.Model(model.inputs, outputs)` where `outputs` is a dict:
    `"block_{i}"`: the token map of block i, (batch, H/P, W/P, C), for each
    i in `blocks` (default: every block; negative indices count from the end),
    and `"pre_logits"`: the pooled (batch, C) features the head sees (after the
    final LayerNorm). It trains with `model.fit` like any Keras model (the
    weights are shared with `model`), as timm's `forward_intermediates` or
    big_vision's `out` dict serve dense tasks.
    """
    block_layers = [l for l in model.layers if isinstance(l, MixerBlock)]
    if not block_layers:
        raise ValueError(f"model: {model.name!r} has no MixerBlock layers; expected a Mixer")
    depth = len(block_layers)
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        blocks = [blocks]  # one block
    indices = range(depth) if blocks is None else blocks
    picked = []
    for i in indices:
        if not (isinstance(i, int) and not isinstance(i, bool) and -depth <= i < depth):
            raise ValueError(f"blocks: expected block indices in [{-depth}, {depth}); got {blocks!r}")
        picked.append(i % depth)
    duplicates = sorted({i for i in picked if picked.count(i) > 1})
    if duplicates:
        raise ValueError(f"blocks: expected each block once; got {blocks!r}, "
                         f"which names block(s) {duplicates} more than once")
    grid = tuple(model.get_layer("stem").output.shape[1:3])
    outputs = {}
    for i in sorted(set(picked)):
        layer = block_layers[i]
        outputs[f"block_{i}"] = keras.layers.Reshape(
            (*grid, layer.hidden_dim), name=f"block_{i}_map")(layer.output)
    if pre_logits:
        norm = model.get_layer("pre_head_layer_norm").output
        outputs["pre_logits"] = keras.layers.GlobalAveragePooling1D(name="pre_logits")(norm)
    if not outputs:
        raise ValueError("blocks: expected at least one output; got no blocks and pre_logits=False")
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def resolve_variant(variant):
    """Returns the config dict of a paper name ("B/16") or checks a custom dict."""
    if isinstance(variant, str) and variant in VARIANTS:
        return dict(VARIANTS[variant])
    if isinstance(variant, dict) and set(variant) == set(CONFIG_KEYS):
        bad = {k: v for k, v in variant.items() if not (isinstance(v, int) and v > 0)}
        if not bad:
            return dict(variant)
        raise ValueError(f"variant: every value must be a positive int; got {bad}")
    raise ValueError(
        f"variant: expected one of {list(VARIANTS)} or a dict with keys "
        f"{list(CONFIG_KEYS)}; got {variant!r}"
    )


def _check_options(include_top, pooling, dropout, drop_path_rate, gelu_form):
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top: expected True or False; got {include_top!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {POOLINGS}; got {pooling!r}")
    for arg, value in (("dropout", dropout), ("drop_path_rate", drop_path_rate)):
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ValueError(f"{arg}: expected a number in [0, 1); got {value!r}")
    if gelu_form is not None and gelu_form not in GELU_FORMS:
        raise ValueError(
            f"gelu_form: expected None (the checkpoint's) or one of {GELU_FORMS}; "
            f"got {gelu_form!r}")


def _input_shape(input_tensor, input_shape, source):
    """(H, W, channels) from `input_tensor`, `input_shape` or the checkpoint."""
    if input_tensor is not None:
        try:
            tensor_shape = tuple(keras.ops.shape(input_tensor))[1:]
        except Exception as err:
            raise ValueError(
                f"input_tensor: expected a Keras tensor or a backend tensor of shape "
                f"(batch, H, W, C); got {input_tensor!r}") from err
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"input_shape: {input_shape!r} does not match input_tensor's shape "
                f"{tensor_shape}")
        input_shape = tensor_shape
    if input_shape is None:
        input_shape = (*(source.resolution or (DEFAULT_SIZE, DEFAULT_SIZE)), 3)
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3:
        raise ValueError(f"input_shape: expected (height, width, channels); got {input_shape!r}")
    if not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"input_shape: expected positive ints (height, width, channels); got {shape}. "
            f"A Mixer's token count is fixed by the image size, so height and width "
            f"cannot be None.")
    if source.pretrained and shape[2] != 3:
        raise ValueError(
            f"input_shape: the {source.name} weights take 3 (RGB) channels; got {shape}")
    return shape


def _token_grid(input_shape, patch):
    """Patches per column and row: the stem pads like the authors' ("SAME")."""
    return -(-input_shape[0] // patch), -(-input_shape[1] // patch)


def _check_head(classes, classifier_activation, include_top, source):
    if not (isinstance(classes, int) and not isinstance(classes, bool) and classes > 0):
        raise ValueError(f"classes: expected a positive int; got {classes!r}")
    try:
        activation = keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as err:
        raise ValueError(f"classifier_activation: expected a Keras activation or None; "
                         f"got {classifier_activation!r}") from err
    if not include_top or not source.pretrained:
        return
    if source.classes and classes != source.classes:
        raise ValueError(
            f"classes: the {source.name} weights have a {source.classes}-class head; "
            f"got classes={classes}. Use include_top=False and add your own head "
            f"to train on other classes."
        )
    # As keras.applications: a pretrained head ends in softmax or stays logits.
    if activation not in (keras.activations.softmax, keras.activations.linear):
        raise ValueError(
            f"classifier_activation: with pretrained weights and include_top=True, "
            f"expected 'softmax' or None (logits); got {classifier_activation!r}"
        )


def _default_name(variant):
    if isinstance(variant, str):
        return "mixer_" + variant.replace("/", "").lower()
    return "mixer"


MIXER_DOCSTRING = """Builds MLP-Mixer {variant} (Tolstikhin et al., 2021).

    Inputs are RGB images with values in [0, 255], shape (batch, H, W, C);
    the checkpoint's own normalization is the model's first layer
    (`preprocess_input` is the identity). Arguments follow keras.applications.

    Args:
        include_top: whether to end in the classification `head`.
        weights: None (random init), a tag ({tags}; downloaded on first use,
            see docs/weights.md), `hf://OWNER/REPO` (a timm repository on
            Hugging Face), a directory laid out like such a repository, an
            authors' `.npz`, or a `.weights.h5` / `.keras` file.
        input_tensor: optional Keras tensor (a `keras.Input` or another
            layer's output) to use as the image input.
        input_shape: (H, W, C); defaults to the checkpoint's (224, 224, 3).
            Sizes that are not multiples of {patch} are padded like the
            authors' stem ("SAME"). C may differ from 3 only with
            weights=None. With pretrained weights, H and W must be integer
            multiples of the checkpoint's size: the token-mixing MLPs are then
            initialised block-diagonally (paper, Appendix C).
        pooling: with include_top=False, None for the (H/{patch}, W/{patch}, C)
            feature map, "avg" or "max" for pooled (batch, C) features.
        classes: head size; defaults to the checkpoint's, else 1000.
        classifier_activation: activation of the "predictions" layer; None
            returns logits. With a pretrained head: "softmax" or None.
        name: model name.
        dropout: dropout rate before the head (fine-tuning; keyword only).
        drop_path_rate: stochastic depth at the last block, rising linearly
            from 0 at the first (keyword only).
        gelu_form: None (the checkpoint's: "tanh" for the authors' files,
            "erf" for PyTorch-trained ones), "tanh", "erf", or "sigmoid" (the
            tanh form in ops accelerators without GELU support; keyword only).

    Returns:
        A `keras.Model`.
    """


def _variant_builder(variant, public_name):
    def builder(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=None, classifier_activation="softmax", name=None,
                **kwargs):
        return Mixer(variant, include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation, name, **kwargs)

    tags = ", ".join(repr(t) for t in weights_lib.available_tags(variant)) or "none"
    builder.__name__ = builder.__qualname__ = public_name
    # help() and inspect show Mixer's own arguments, not **kwargs.
    mixer = inspect.signature(Mixer)
    builder.__signature__ = mixer.replace(parameters=list(mixer.parameters.values())[1:])
    builder.__doc__ = MIXER_DOCSTRING.format(
        variant=variant, tags=tags, patch=VARIANTS[variant]["patch_size"]
    )
    return builder


MixerS32 = _variant_builder("S/32", "MixerS32")
MixerS16 = _variant_builder("S/16", "MixerS16")
MixerS8 = _variant_builder("S/8", "MixerS8")
MixerB32 = _variant_builder("B/32", "MixerB32")
MixerB16 = _variant_builder("B/16", "MixerB16")
MixerL32 = _variant_builder("L/32", "MixerL32")
MixerL16 = _variant_builder("L/16", "MixerL16")
MixerH14 = _variant_builder("H/14", "MixerH14")
