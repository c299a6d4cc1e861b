"""MLP-Mixer as keras-hub classes, so keras-hub's own `from_preset` opens a
preset that `keras_mixer.export.export_keras_hub` wrote:

    import keras_mixer, keras_hub                 # either order
    classifier = keras_hub.models.ImageClassifier.from_preset("out/mixer_hub")
    classifier.predict(raw_images)                # RGB 0-255, any one size

`MixerBackbone` is the Mixer trunk (`keras_mixer.model.mixer_trunk`: stem,
blocks, final LayerNorm) on normalized images, returning the (H/P, W/P, C)
token map; keras-hub's `ImageClassifier` average-pools it and applies the head,
which is the Mixer's own pooling (after the final norm). The checkpoint's
normalization (`scale * x + offset`) and its evaluation resize and centre crop
live in `MixerImageConverter`.

Importing keras_mixer imports this module once keras_hub is imported
(`_lazy.register_after`), which registers the classes with Keras; keras_mixer
itself does not need keras-hub.
"""

import keras
from keras import ops
from keras_hub.models import Backbone, ImageClassifier, ImageClassifierPreprocessor
from keras_hub.layers import ImageConverter

from keras_mixer import preprocessing
from keras_mixer.layers import GELU_FORMS
from keras_mixer.model import _token_grid, mixer_trunk, resolve_variant

_register = keras.saving.register_keras_serializable(package="keras_mixer")


@_register
class MixerBackbone(Backbone):
    """MLP-Mixer trunk: normalized images (batch, H, W, C) -> token map
    (batch, ceil(H/P), ceil(W/P), hidden_dim), after the final LayerNorm.

    Args (keyword-only; `get_config` returns exactly these):
        image_shape: (H, W, C), static.
        num_blocks, patch_size, hidden_dim, tokens_mlp_dim, channels_mlp_dim:
            the variant (`keras_mixer.VARIANTS` holds the paper's).
        gelu_form: "tanh" (the authors' checkpoints), "erf" or "sigmoid".
        drop_path_rate: stochastic depth at the last block (training only).
    """

    def __init__(self, *, image_shape, num_blocks, patch_size, hidden_dim, tokens_mlp_dim,
                 channels_mlp_dim, gelu_form="tanh", drop_path_rate=0.0, dtype=None, **kwargs):
        config = resolve_variant(dict(
            num_blocks=num_blocks, patch_size=patch_size, hidden_dim=hidden_dim,
            tokens_mlp_dim=tokens_mlp_dim, channels_mlp_dim=channels_mlp_dim))
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
        if not (shape and len(shape) == 3 and all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise ValueError(f"image_shape: expected (height, width, channels), positive ints; "
                             f"got {image_shape!r}")
        if gelu_form not in GELU_FORMS:
            raise ValueError(f"gelu_form: expected one of {GELU_FORMS}; got {gelu_form!r}")
        grid = _token_grid(shape, patch_size)
        images = keras.Input(shape=shape, name="images")
        x = mixer_trunk(images, config, grid, drop_path_rate=drop_path_rate, gelu_form=gelu_form)
        x = keras.layers.Reshape((*grid, hidden_dim), name="feature_map")(x)
        super().__init__(inputs=images, outputs=x, dtype=dtype, **kwargs)
        self.image_shape = shape
        self.num_blocks, self.patch_size, self.hidden_dim = num_blocks, patch_size, hidden_dim
        self.tokens_mlp_dim, self.channels_mlp_dim = tokens_mlp_dim, channels_mlp_dim
        self.gelu_form, self.drop_path_rate = gelu_form, drop_path_rate
        self.data_format = "channels_last"  # ImageClassifier's pooler reads it

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "num_blocks": self.num_blocks, "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim, "tokens_mlp_dim": self.tokens_mlp_dim,
                "channels_mlp_dim": self.channels_mlp_dim, "gelu_form": self.gelu_form,
                "drop_path_rate": self.drop_path_rate}


class _EvalResizeCrop(keras.layers.Layer):
    """keras-mixer's eval transform (`preprocessing.eval_resize_crop`) on a
    batch or one image, standing where ImageConverter keeps its `Resizing`
    layer (and, like it, with a settable height and width)."""

    def __init__(self, height, width, crop_fraction, interpolation, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = height, width
        self.crop_fraction, self.interpolation = crop_fraction, interpolation

    def call(self, images):
        if isinstance(images, dict):
            raise ValueError("images: MixerImageConverter takes images, not a dict with "
                             f"bounding boxes; got keys {sorted(images)}")
        out = preprocessing.eval_resize_crop(images, (self.height, self.width),
                                             self.crop_fraction, self.interpolation)
        return out if type(out).__module__.startswith("tensorflow") else ops.convert_to_tensor(out)


@_register
class MixerImageConverter(ImageConverter):
    """keras-hub's ImageConverter with keras-mixer's eval transform: resize so
    that `image_size` is `crop_fraction` of the shorter side, with
    `interpolation`, centre-crop, then `scale * x + offset` (the checkpoint's
    normalization). keras-hub's own resize (`crop_to_aspect_ratio`) crops the
    largest centred window first and resizes it to `image_size`: that is
    crop_fraction 1 in another order, and cannot express 0.875, so this class
    adds `crop_fraction` and runs keras-mixer's function instead."""

    backbone_cls = MixerBackbone

    def __init__(self, image_size=None, crop_fraction=preprocessing.CROP_FRACTION,
                 interpolation="bicubic", **kwargs):
        kwargs.setdefault("crop_to_aspect_ratio", True)
        super().__init__(image_size=image_size, interpolation=interpolation, **kwargs)
        # Checked by EvalTransform (size, crop_fraction, interpolation).
        if image_size is not None:
            preprocessing.EvalTransform(tuple(image_size), crop_fraction, interpolation)
        elif interpolation not in preprocessing.INTERPOLATIONS:
            raise ValueError(f"interpolation: expected one of {preprocessing.INTERPOLATIONS}; "
                             f"got {interpolation!r}")
        self.crop_fraction = crop_fraction
        size = image_size or (None, None)
        self.resizing = _EvalResizeCrop(size[0], size[1], crop_fraction, interpolation,
                                        dtype=self.dtype_policy, name="resizing")

    def get_config(self):
        return {**super().get_config(), "crop_fraction": self.crop_fraction}


@_register
class MixerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    backbone_cls = MixerBackbone
    image_converter_cls = MixerImageConverter


@_register
class MixerImageClassifier(ImageClassifier):
    """keras-hub's ImageClassifier over a MixerBackbone: average pooling of the
    normalized token map, dropout, then the Dense head (`predictions`)."""

    backbone_cls = MixerBackbone
    preprocessor_cls = MixerImageClassifierPreprocessor
