"""The one input contract: RGB images with values 0-255.

Rescaling to [-1, 1] (or the checkpoint's own normalization) is the model's
first layer, so `preprocess_input` is the identity (as in
keras.applications.convnext). What is left outside the model is each
checkpoint's evaluation transform, `EvalTransform`: resize so that the
model's H x W is `crop_fraction` of the image, with the checkpoint's
interpolation, then centre-crop. The model carries it (its `rescaling`
layer), and every consumer reads it from there (`EvalTransform.of(model)`):
predict, evaluate, export calibration and verification, every sidecar
(`to_json`), the SavedModel's image-bytes signature and the Android app. On a
`tf.Tensor` (tf.data, SavedModels) it runs in TensorFlow, on an array through
`keras.ops`, so `load_image` and the model core need no TensorFlow.
"""

import dataclasses
import math

import numpy as np

# Resize so that the crop is 87.5% of the shorter side (256 -> 224), then crop.
CROP_FRACTION = 0.875
# Images with more pixels are refused from their header, before decoding
# (a 1 MB PNG can declare 20000x20000 pixels: 1.2 GB decoded, 4.8 GB as float).
MAX_IMAGE_PIXELS = 50_000_000
# Images whose long side is more than this many times their short side are
# refused from their header too: the resize makes the short side
# size / crop_fraction, so a 1 x 4000 PNG of 93 bytes would become 256 x 1,024,000
# floats (3 GB). Phone panoramas are ~4:1 to ~9:1 and 360-degree ones 2:1; 20:1
# keeps every one of them, and bounds the resized image to 20 x (size/crop)^2
# pixels (16 MB of float32 at 224). The model sees only the centre square anyway.
MAX_ASPECT_RATIO = 20
INTERPOLATIONS = ("bicubic", "bilinear")


def preprocess_input(x, data_format=None):
    """Identity: Mixer models take RGB 0-255 and rescale themselves."""
    return x


def eval_resize_crop(image, size=(224, 224), crop_fraction=CROP_FRACTION,
                     interpolation="bicubic"):
    """Paper's eval transform on one (H, W, 3) image, or a batch (N, H, W, 3) of
    one size: resize the shorter side to size / crop_fraction, centre-crop
    `size`. Returns float32 0-255."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}; got {interpolation!r}")
    if type(image).__module__.startswith("tensorflow"):
        return _tf_resize_crop(image, size, crop_fraction, interpolation)
    from keras import ops

    height, width = size
    image = np.asarray(image)
    batch = image if image.ndim == 4 else image[None]
    new = _resized_shape(batch.shape[1:3], size, crop_fraction)
    x = ops.image.resize(ops.cast(batch, "float32"), new, interpolation=interpolation,
                         antialias=False, data_format="channels_last")
    top, left = (new[0] - height) // 2, (new[1] - width) // 2
    x = np.clip(np.asarray(x)[:, top:top + height, left:left + width], 0.0, 255.0)
    return x if image.ndim == 4 else x[0]


def _resized_shape(shape, size, crop_fraction):
    # float32 arithmetic, in the TensorFlow path's order, so both give one size.
    shape = np.asarray(shape, np.float32)
    scale = np.max(np.asarray(size, np.float32) / np.float32(crop_fraction) / shape)
    return tuple(int(math.ceil(v)) for v in shape * scale)


def _tf_resize_crop(image, size, crop_fraction, interpolation):
    import tensorflow as tf

    height, width = size
    shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)  # one image or a batch
    scale = tf.reduce_max(tf.constant([height, width], tf.float32) / crop_fraction / shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), new, method=interpolation)
    top = (new[0] - height) // 2
    left = (new[1] - width) // 2
    image = image[..., top:top + height, left:left + width, :]
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, image.shape[:-3].concatenate((height, width, 3)))


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """A checkpoint's evaluation transform to the model's (H, W) input: resize
    so the centre crop is `crop_fraction` of the image, with `interpolation`,
    then crop. Call it on one (H, W, 3) image (array or tf.Tensor)."""

    size: tuple  # (height, width) of the model's input
    crop_fraction: float = CROP_FRACTION
    interpolation: str = "bicubic"

    def __post_init__(self):
        size = tuple(self.size) if isinstance(self.size, (tuple, list)) else None
        if not (size and len(size) == 2 and all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
            raise ValueError(f"size: expected (height, width), positive ints; got {self.size!r}")
        object.__setattr__(self, "size", size)
        fraction = self.crop_fraction
        if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
                and math.isfinite(fraction) and 0 < fraction <= 1):
            raise ValueError(f"crop_fraction: expected a number in (0, 1]; got {fraction!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}; "
                             f"got {self.interpolation!r}")

    @classmethod
    def of(cls, model):
        """The transform a Mixer carries: its input size and its `rescaling`
        layer's crop and interpolation (the paper's for models without them)."""
        layer = next((l for l in model.layers if l.name == "rescaling"), None)
        return cls(tuple(model.input_shape[1:3]),
                   crop_fraction=getattr(layer, "crop_fraction", CROP_FRACTION),
                   interpolation=getattr(layer, "interpolation", "bicubic"))

    @classmethod
    def coerce(cls, value):
        """An EvalTransform as is; (H, W) or an int: the paper's transform to that size."""
        if isinstance(value, cls):
            return value
        return cls((value, value) if isinstance(value, int) else value)

    def __call__(self, image):
        return eval_resize_crop(image, self.size, self.crop_fraction, self.interpolation)

    def to_json(self):
        """The sidecar's "preprocessing" field (the size is the input shape's)."""
        return {"crop_fraction": float(self.crop_fraction), "interpolation": self.interpolation}


def load_image(path, size=(224, 224), *, crop_fraction=None, interpolation=None,
               max_pixels=MAX_IMAGE_PIXELS):
    """Reads an image file (JPEG, PNG, GIF, BMP, WebP...) into the model's
    contract: float32 (H, W, 3), RGB 0-255, resized and centre-cropped.

    size: (H, W) or an int for the paper's transform (crop 0.875, bicubic), or
    an `EvalTransform`, e.g. `EvalTransform.of(model)`: the checkpoint's own.
    crop_fraction, interpolation: replace the transform's.
    Images above `max_pixels` or MAX_ASPECT_RATIO are refused from their
    header, before decoding. EXIF orientation is applied; 16-bit images are
    scaled to 0-255 (>> 8), alpha is dropped; float images are refused.
    """
    from PIL import Image

    transform = EvalTransform.coerce(size)
    changes = dict(crop_fraction=crop_fraction, interpolation=interpolation)
    transform = dataclasses.replace(transform, **{k: v for k, v in changes.items() if v is not None})

    try:
        with Image.open(path) as img:
            check_image_shape(img.height, img.width, max_pixels, arg=f"path: {path!r}")
            array = _rgb_array(img, path)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"path: cannot read {path!r} as an image: {err}") from err
    return transform(array)


def check_image_shape(height, width, max_pixels=MAX_IMAGE_PIXELS, *, arg="image"):
    """Refuses (ValueError) an image of more than `max_pixels` pixels or an aspect
    ratio beyond MAX_ASPECT_RATIO, from its header's size, before decoding."""
    pixels = width * height
    if pixels > max_pixels:
        raise ValueError(f"{arg} has {width}x{height} = {pixels:,} pixels; "
                         f"expected at most max_pixels={max_pixels:,}")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(f"{arg} is {width}x{height}; expected an aspect ratio of at most "
                         f"MAX_ASPECT_RATIO={MAX_ASPECT_RATIO}:1")


def _rgb_array(img, path):
    """uint8 (H, W, 3) of a Pillow image, with the pixels TensorFlow's
    `decode_image(channels=3)` (the SavedModel's) gives for the same file:
    16-bit samples >> 8 (libpng's strip), alpha dropped without compositing,
    palettes expanded, CMYK as Pillow converts it (TensorFlow agrees). The EXIF
    orientation is applied, as the SavedModel's serve_bytes applies it in its
    graph (TensorFlow's decoders ignore it): a phone photo comes upright."""
    from PIL import Image, ImageOps

    ImageOps.exif_transpose(img, in_place=True)
    if img.mode.startswith("I;16"):
        # Pillow reads 16-bit grey PNGs as I;16 and its convert("RGB") clips them to 255.
        img = Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8))
    elif img.mode == "I":
        # 32-bit ints: Pillow's mode for 16-bit data once widened (TIFF, older PNG
        # reads), so read as 0-65535 like I;16; values outside are clipped.
        img = Image.fromarray((np.clip(np.asarray(img), 0, 65535) >> 8).astype(np.uint8))
    elif img.mode == "F":
        raise ValueError(f"path: {path!r} has floating-point pixels (mode 'F'), which have "
                         "no standard 0-255 scale; expected an image of 8- or 16-bit "
                         "integers: convert it to 8-bit first")
    return np.asarray(img.convert("RGB"))
