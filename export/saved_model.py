"""Keras Mixer -> SavedModel for servers, in TF Serving's layout NAME/VERSION/.

Signatures (all return probabilities: a softmax is added if the model ends
in logits):
  serving_default  images float32 (N, H, W, 3), RGB 0-255 -> probabilities
  serve_uint8      images uint8 (N, H, W, 3)               -> probabilities
  serve_bytes      image_bytes string (N,): JPEG/PNG/GIF/BMP files
                   -> labels string (N, k), scores float32 (N, k), classes int32 (N, k)
                   with the paper's eval transform (resize, centre crop) in the graph
With `xla=True` the model's compute is a `tf.function(jit_compile=True)`.
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

from . import common

DEFAULT_TOP_K = 5


def export_saved_model(model, output, *, weights=None, version=1, xla=False,
                       top_k=DEFAULT_TOP_K, labels=None, overwrite=False):
    """Writes `output/<version>/` and returns that path.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    """
    if not (isinstance(version, int) and version >= 1):
        raise ValueError(f"version: expected an int >= 1; got {version!r}")
    if not isinstance(xla, bool):
        raise ValueError(f"xla: expected True or False; got {xla!r}")
    if not isinstance(output, str) or not output or output.endswith((".tflite", ".keras")):
        raise ValueError(f"output: expected a directory path (NAME, gets NAME/{version}/); got {output!r}")
    if not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k: expected an int >= 1; got {top_k!r}")
    path = os.path.join(output, str(version))
    files.check_output(path, overwrite=overwrite)
    net = inference.load_model(model, weights=weights)
    size = common.static_image_size(net)
    classes = int(net.output_shape[-1])
    if not (isinstance(top_k, int) and 1 <= top_k <= classes):
        raise ValueError(f"top_k: expected an int in [1, {classes}]; got {top_k!r}")
    names = labels_lib.class_names(classes, labels)
    module, signatures = build_serving_module(net, size, names, top_k, xla)
    import tensorflow as tf

    # TF Serving loads every version directory it sees: the new version appears
    # complete, by a rename, and an old one is replaced only then.
    with files.atomic_path(path, directory=True) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
    return path


def build_serving_module(model, size, labels, top_k, xla):
    """(tf.Module, signatures dict) serving `model`."""
    import tensorflow as tf

    from keras_mixer.preprocessing import eval_resize_crop

    height, width = size
    softmax = common.output_kind(model) == "logits"
    module = tf.Module()
    module.model = model
    module.labels = tf.Variable(labels, trainable=False, dtype=tf.string, name="labels")

    @tf.function(jit_compile=xla)
    def compute(images):
        out = model(images, training=False)
        return tf.nn.softmax(out) if softmax else out

    image_spec = (None, height, width, 3)

    @tf.function(input_signature=[tf.TensorSpec(image_spec, tf.float32, name="images")])
    def serve_float(images):
        return {"probabilities": compute(images)}

    @tf.function(input_signature=[tf.TensorSpec(image_spec, tf.uint8, name="images")])
    def serve_uint8(images):
        return {"probabilities": compute(tf.cast(images, tf.float32))}

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return eval_resize_crop(image, size)

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(decode, image_bytes,
                           fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
        scores, classes = tf.math.top_k(compute(images), k=top_k)
        return {"labels": tf.gather(module.labels, classes), "scores": scores,
                "classes": classes}

    module.compute = compute
    signatures = {"serving_default": serve_float, "serve_uint8": serve_uint8,
                  "serve_bytes": serve_bytes}
    return module, signatures


def warm_up(loaded, batch_sizes=(1,)):
    """Calls every image signature of a loaded SavedModel once per batch size,
    so XLA compiles before the first real request."""
    import tensorflow as tf

    for batch in batch_sizes:
        for name in ("serving_default", "serve_uint8"):
            fn = loaded.signatures[name]
            spec = fn.structured_input_signature[1]["images"]
            fn(images=tf.zeros((batch, *spec.shape[1:]), spec.dtype))
