"""Keras Mixer -> SavedModel for servers, in TF Serving's layout NAME/VERSION/.

Signatures (all return probabilities: a softmax is added if the model ends
in logits, as `common.output_kind` reads it from the graph or `output_kind=`
states it):
  serving_default  images float32 (N, H, W, 3), RGB 0-255 -> probabilities
  serve_uint8      images uint8 (N, H, W, 3)               -> probabilities
  serve_bytes      image_bytes string (N,): JPEG/PNG/GIF/BMP files
                   -> labels string (N, k), scores float32 (N, k), classes int32 (N, k)
                   with the model's eval transform (`EvalTransform.of(model)`: its
                   checkpoint's resize, centre crop and interpolation) in the graph
                   Refused from the header, before decoding (InvalidArgumentError):
                   other formats, over MAX_IMAGE_PIXELS, aspect over MAX_ASPECT_RATIO.
                   A JPEG's EXIF orientation is applied in the graph (TensorFlow's
                   decoders ignore it), as keras_mixer.load_image applies it.
With `xla=True` the model's compute is a `tf.function(jit_compile=True)`.
With `precision="bfloat16"` it runs under Keras' mixed_bfloat16 policy
(`rebuild.with_precision`: float32 weights, head and outputs; bfloat16
matmuls). Its probabilities differ from float32 by up to BFLOAT16_TOLERANCE;
it pays only where the hardware multiplies bfloat16 natively (AVX512_BF16/AMX
CPUs, GPUs, TPUs): see docs/performance for measurements.
XLA programs are not stored in the SavedModel: each new batch shape compiles
on its first call (seconds), so a server should warm up: call each signature
once per batch size it will serve before taking traffic (`warm_up` below), or
ship TF Serving warm-up requests in assets.extra/tf_serving_warmup_requests.
The files are plain TensorFlow: `tf.saved_model.load` and `saved_model_cli`
read them with no keras_mixer installed.
"""

import os

from keras_mixer import files, inference
from keras_mixer import labels as labels_lib
from keras_mixer.precision import Precision

from . import common
from .common import PRECISIONS

DEFAULT_TOP_K = 5
# What a bfloat16 SavedModel may differ from its float32 twin by, on
# probabilities: bfloat16 keeps ~3 significant digits per activation. On the
# 2-block digits Mixer of tests/test_export_bfloat16.py: max 0.025, top-1
# agreement 0.997, accuracy +0.3 points (with and without XLA). Deeper
# models accumulate more: check yours with `export verify`-style held-out data.
BFLOAT16_TOLERANCE = {"max_abs_error": 0.05, "top1_agreement": 0.98, "accuracy_drop": 0.01}


def export_saved_model(model, output, *, weights=None, version=1, xla=False,
                       precision="float32", top_k=None, labels=None, overwrite=False,
                       output_kind=None):
    """Writes `output/<version>/` and returns that path.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    precision: "float32" or "bfloat16" (see the module docstring).
    top_k: labels per image of serve_bytes (None: DEFAULT_TOP_K, or every
        class of a model with fewer).
    output_kind: "probabilities" or "logits" (softmaxed in the graph); None
        reads it from the model's graph (`common.output_kind`, which refuses a
        sigmoid or unknown head).
    """
    if not (isinstance(version, int) and version >= 1):
        raise ValueError(f"version: expected an int >= 1; got {version!r}")
    if not isinstance(xla, bool):
        raise ValueError(f"xla: expected True or False; got {xla!r}")
    Precision.parse(precision, allowed=map(Precision, PRECISIONS))
    output = common.fspath(output)
    if not isinstance(output, str) or not output or output.endswith((".tflite", ".keras")):
        raise ValueError(f"output: expected a directory path (NAME, gets NAME/{version}/); got {output!r}")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k: expected None or an int >= 1; got {top_k!r}")
    common.check_output_kind(output_kind)
    path = os.path.join(output, str(version))
    files.check_output(path, overwrite=overwrite)
    net = inference.load_model(common.fspath(model), weights=weights)
    size = common.static_image_size(net)
    kind = common.output_kind(net, output_kind)
    classes = int(net.output_shape[-1])
    top_k = min(DEFAULT_TOP_K, classes) if top_k is None else top_k
    if not (isinstance(top_k, int) and 1 <= top_k <= classes):
        raise ValueError(f"top_k: expected an int in [1, {classes}]; got {top_k!r}")
    names = labels_lib.class_names(classes, labels)
    from .rebuild import with_precision

    module, signatures = build_serving_module(with_precision(net, precision), size, names,
                                              top_k, xla, kind=kind)
    import tensorflow as tf

    # TF Serving loads every version directory it sees: the new version appears
    # complete, by a rename, and an old one is replaced only then.
    with files.atomic_path(path, directory=True) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
    return path


def build_serving_module(model, size, labels, top_k, xla, *, kind=None):
    """(tf.Module, signatures dict) serving `model` (kind: its output kind,
    None: read from its graph)."""
    import tensorflow as tf

    from keras_mixer.preprocessing import EvalTransform

    height, width = size
    transform = EvalTransform.of(model)  # the checkpoint's own resize, crop, interpolation
    softmax = common.output_kind(model, kind) == "logits"
    module = tf.Module()
    module.model = model
    module.labels = tf.Variable(labels, trainable=False, dtype=tf.string, name="labels")

    @tf.function(jit_compile=xla)
    def compute(images):
        out = tf.cast(model(images, training=False), tf.float32)
        return tf.nn.softmax(out) if softmax else out

    image_spec = (None, height, width, 3)

    @tf.function(input_signature=[tf.TensorSpec(image_spec, tf.float32, name="images")])
    def serve_float(images):
        return {"probabilities": compute(images)}

    @tf.function(input_signature=[tf.TensorSpec(image_spec, tf.uint8, name="images")])
    def serve_uint8(images):
        return {"probabilities": compute(tf.cast(images, tf.float32))}

    def decode(data):
        # The header's size is checked before decoding, as load_image does: a
        # refused request costs nothing and the server goes on serving.
        with tf.control_dependencies(_header_checks(data)):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = _upright(image, _exif_orientation(data))  # phone photos are stored sideways
        return transform(image)

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        """Encoded images -> top-k, JPEGs turned upright by their EXIF orientation."""
        images = tf.map_fn(decode, image_bytes,
                           fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
        scores, classes = tf.math.top_k(compute(images), k=top_k)
        return {"labels": tf.gather(module.labels, classes), "scores": scores,
                "classes": classes}

    module.compute = compute
    signatures = {"serving_default": serve_float, "serve_uint8": serve_uint8,
                  "serve_bytes": serve_bytes}
    return module, signatures


def _header_shape(data):
    """(height, width) int64 from a JPEG, PNG, GIF, BMP or WebP file's header;
    (0, 0) for any other format. Reads at most the first 32 bytes (JPEG: its
    SOF marker), never the pixels."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), "\0" * 32]), 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def big(i, n):  # n-byte big-endian unsigned int at byte i
        return sum(b[i + k] * 256 ** (n - 1 - k) for k in range(n))

    def little(i, n):
        return sum(b[i + k] * 256 ** k for k in range(n))

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    def bmp():  # a negative height means top-down rows
        height = little(22, 4)
        return tf.stack([tf.where(height >= 2 ** 31, 2 ** 32 - height, height), little(18, 4)])

    def webp():
        chunk = tf.strings.substr(head, 12, 4)
        return tf.case([
            (tf.equal(chunk, "VP8 "), lambda: tf.stack([little(28, 2) % 16384, little(26, 2) % 16384])),
            (tf.equal(chunk, "VP8L"), lambda: tf.stack([little(21, 4) // 16384 % 16384 + 1,
                                                        little(21, 4) % 16384 + 1])),
            (tf.equal(chunk, "VP8X"), lambda: tf.stack([little(27, 3) + 1, little(24, 3) + 1]))],
            default=lambda: tf.zeros([2], tf.int64))

    start = lambda n: tf.strings.substr(head, 0, n)  # noqa: E731
    return tf.case([
        (tf.io.is_jpeg(data), jpeg),
        (tf.equal(start(8), b"\x89PNG\r\n\x1a\n"), lambda: tf.stack([big(20, 4), big(16, 4)])),
        (tf.equal(start(3), "GIF"), lambda: tf.stack([little(8, 2), little(6, 2)])),
        (tf.equal(start(2), "BM"), bmp),
        (tf.logical_and(tf.equal(start(4), "RIFF"), tf.equal(tf.strings.substr(head, 8, 4), "WEBP")),
         webp)], default=lambda: tf.zeros([2], tf.int64))


def _header_checks(data):
    """Assertions that fail (InvalidArgumentError) for an unknown format and,
    as load_image, for too many pixels or too long an aspect ratio."""
    import tensorflow as tf

    from keras_mixer.preprocessing import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS

    shape = _header_shape(data)
    height, width = shape[0], shape[1]
    got = ["got (height, width):", shape]
    return [
        tf.debugging.Assert(tf.minimum(height, width) > 0, [
            "image_bytes: expected a JPEG, PNG, GIF, BMP or WebP file of at least 1x1 pixels; "
            "got another format, or a size of 0", shape]),
        tf.debugging.Assert(height * width <= MAX_IMAGE_PIXELS, [
            f"image_bytes: expected at most {MAX_IMAGE_PIXELS:,} pixels;", *got]),
        tf.debugging.Assert(tf.maximum(height, width) <= MAX_ASPECT_RATIO * tf.minimum(height, width), [
            f"image_bytes: expected an aspect ratio of at most {MAX_ASPECT_RATIO}:1;", *got]),
    ]


def _exif_orientation(data):
    """The EXIF Orientation (1-8) in a JPEG's APP1 segment, read as
    PIL.ImageOps.exif_transpose reads it (IFD0's tag 0x0112, either byte
    order); 1 for other formats and when absent or unreadable."""
    import tensorflow as tf

    head = tf.strings.substr(data, 0, 65536)  # APP1 is at most 64 KB, at the start
    parts = tf.strings.split(head, sep="Exif\0\0", maxsplit=1)

    def read():
        tiff = parts[1]
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(
            tf.strings.join([tiff, "\0" * 8]), 0, 8), tf.uint8), tf.int64)
        little = tf.equal(tf.strings.substr(tiff, 0, 2), "II")

        def num(x, n):  # x: (..., n) bytes -> ints in the file's byte order
            weights = tf.constant([256 ** k for k in range(n)], tf.int64)
            return tf.where(little, tf.reduce_sum(x * weights, -1),
                            tf.reduce_sum(x * weights[::-1], -1))

        ifd = tf.minimum(num(b[4:8], 4), tf.cast(tf.strings.length(tiff), tf.int64))
        entries = tf.strings.substr(tf.strings.join([tiff, "\0" * (2 + 12 * 64)]), ifd, 2 + 12 * 64)
        e = tf.cast(tf.io.decode_raw(entries, tf.uint8), tf.int64)
        count = tf.minimum(num(e[:2], 2), 64)
        rows = tf.reshape(e[2:], (64, 12))[:count]
        tags = num(rows[:, 0:2], 2)
        values = num(rows[:, 8:10], 2)
        found = tf.boolean_mask(values, tf.equal(tags, 0x0112))
        value = tf.cond(tf.size(found) > 0, lambda: found[0], lambda: tf.constant(1, tf.int64))
        return tf.where((value >= 1) & (value <= 8), value, 1)

    return tf.cond(tf.io.is_jpeg(data) & (tf.size(parts) == 2), read,
                   lambda: tf.constant(1, tf.int64))


def _upright(image, orientation):
    """`image` turned as its EXIF orientation says (PIL.ImageOps.exif_transpose)."""
    import tensorflow as tf

    t = lambda x: tf.transpose(x, (1, 0, 2))  # noqa: E731
    return tf.switch_case(tf.cast(orientation - 1, tf.int32), [
        lambda: image, lambda: image[:, ::-1], lambda: image[::-1, ::-1], lambda: image[::-1],
        lambda: t(image), lambda: t(image[::-1]), lambda: t(image[::-1, ::-1]),
        lambda: t(image)[::-1]])


def warm_up(loaded, batch_sizes=(1,)):
    """Calls every image signature of a loaded SavedModel once per batch size,
    so XLA compiles before the first real request."""
    import tensorflow as tf

    for batch in batch_sizes:
        for name in ("serving_default", "serve_uint8"):
            fn = loaded.signatures[name]
            spec = fn.structured_input_signature[1]["images"]
            fn(images=tf.zeros((batch, *spec.shape[1:]), spec.dtype))
