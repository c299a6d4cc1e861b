"""The one input contract: RGB images with values 0-255.

Rescaling to [-1, 1] is the model's first layer, so `preprocess_input` is the
identity (as in keras.applications.convnext). `eval_resize_crop` is the paper's
evaluation transform, shared by prediction, evaluation and the exported
SavedModel's image-bytes signature: on a `tf.Tensor` (tf.data, SavedModels) it
runs in TensorFlow, on an array through `keras.ops`, so `load_image` and the
model core need no TensorFlow.
"""

import math

import numpy as np

# Resize so that the crop is 87.5% of the shorter side (256 -> 224), then crop.
CROP_FRACTION = 0.875
# Images with more pixels are refused from their header, before decoding
# (a 1 MB PNG can declare 20000x20000 pixels: 1.2 GB decoded, 4.8 GB as float).
MAX_IMAGE_PIXELS = 50_000_000
INTERPOLATIONS = ("bicubic", "bilinear")


def preprocess_input(x, data_format=None):
    """Identity: Mixer models take RGB 0-255 and rescale themselves."""
    return x


def eval_resize_crop(image, size=(224, 224), crop_fraction=CROP_FRACTION,
                     interpolation="bicubic"):
    """Paper's eval transform on one (H, W, 3) image: resize the shorter side to
    size / crop_fraction, centre-crop `size`. Returns float32 0-255."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}; got {interpolation!r}")
    if type(image).__module__.startswith("tensorflow"):
        return _tf_resize_crop(image, size, crop_fraction, interpolation)
    from keras import ops

    height, width = size
    image = np.asarray(image)
    new = _resized_shape(image.shape[:2], size, crop_fraction)
    x = ops.image.resize(ops.cast(image[None], "float32"), new, interpolation=interpolation,
                         antialias=False, data_format="channels_last")[0]
    top, left = (new[0] - height) // 2, (new[1] - width) // 2
    return np.clip(np.asarray(x)[top:top + height, left:left + width], 0.0, 255.0)


def _resized_shape(shape, size, crop_fraction):
    # float32 arithmetic, in the TensorFlow path's order, so both give one size.
    shape = np.asarray(shape, np.float32)
    scale = np.max(np.asarray(size, np.float32) / np.float32(crop_fraction) / shape)
    return tuple(int(math.ceil(v)) for v in shape * scale)


def _tf_resize_crop(image, size, crop_fraction, interpolation):
    import tensorflow as tf

    height, width = size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([height, width], tf.float32) / crop_fraction / shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), new, method=interpolation)
    top = (new[0] - height) // 2
    left = (new[1] - width) // 2
    image = image[top:top + height, left:left + width, :]
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, (height, width, 3))


def eval_transform(model):
    """{crop_fraction, interpolation} a Mixer's checkpoint was evaluated with
    (carried by its `rescaling` layer); the paper's for older models."""
    layer = next((l for l in model.layers if l.name == "rescaling"), None)
    return dict(crop_fraction=getattr(layer, "crop_fraction", CROP_FRACTION),
                interpolation=getattr(layer, "interpolation", "bicubic"))


def load_image(path, size=(224, 224), *, crop_fraction=CROP_FRACTION, interpolation="bicubic",
               max_pixels=MAX_IMAGE_PIXELS):
    """Reads an image file (JPEG, PNG, GIF, BMP, WebP...) into the model's
    contract: float32 (H, W, 3), RGB 0-255, the paper's resize and centre crop.

    Images above `max_pixels` are refused from their header, before decoding.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            pixels = img.width * img.height
            if pixels > max_pixels:
                raise ValueError(
                    f"path: {path!r} has {img.width}x{img.height} = {pixels:,} pixels; "
                    f"expected at most max_pixels={max_pixels:,}")
            array = np.asarray(img.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"path: cannot read {path!r} as an image: {err}") from err
    return eval_resize_crop(array, size, crop_fraction, interpolation)
