"""Keras Mixer -> .tflite for phones and edge accelerators.

    report = export_tflite("mixer.keras", "out/mixer.tflite", quantize="int8")

The model is first written as a SavedModel with one static batch-1 signature
(the robust path under Keras 3; a static batch keeps the Dense layers on
token tensors as FULLY_CONNECTED, one XNNPACK partition), then converted.
Quantization modes:
  none     float32 weights and activations
  float16  float16 weights, dequantized at load (half the size)
  dynamic  int8 weights, float activations quantized on the fly
  int8     full-integer post-training quantization, calibrated on
           representative images; input/output float32, or uint8/int8
           (`io_dtype`) for integer-only accelerators
`float_ops` keeps the named TFLite ops in float inside an int8 model (the
standard remedy where LayerNorm statistics or residual adds lose accuracy).
An int8 model with float output always keeps its final SOFTMAX in float and,
for target="cpu", its LayerNorms' RSQRT (XNNPACK has no int8 RSQRT): with
`rebuild._Int8LayerNorm` the whole graph is then one XNNPACK partition
(tests/test_export_int8.py pins it for S/16). The int8 RSQRT kernel itself dequantizes, takes the
root and requantizes, so the outputs are the same. Integer input/output
(`io_dtype`, for integer-only accelerators) keeps every op integer.
A sidecar `<model>.json` (see `export.metadata`) carries labels and the
input contract.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from keras_mixer import files, inference
from keras_mixer import labels as labels_lib
from keras_mixer.preprocessing import EvalTransform

from . import common, metadata, targets

QUANTIZE_MODES = metadata.QUANTIZE_MODES
IO_DTYPES = ("float32", "uint8", "int8")
# TFLite's guidance is ~100-500 calibration images; 200 keeps conversion quick.
DEFAULT_SAMPLES = 200
# Fewer images than this give activation ranges that are mostly noise.
MIN_SAMPLES = 10
# Presets for `float_ops`, by the TFLite ops the converter emits:
# LayerNorm becomes MEAN, SUB, MUL, RSQRT and ADD (see
# rebuild.rebuild_for_target); its statistics (MEAN, RSQRT) and centring
# (SUB) are what int8 hurts most.
# "residual" keeps every ADD in float (residual adds, LayerNorm's +eps/+beta).
FLOAT_OP_PRESETS = {
    "layernorm": ("MEAN", "SUB", "RSQRT"),
    "residual": ("ADD",),
}


def export_tflite(model, output, *, weights=None, quantize="none", target="cpu",
                  representative="default", num_samples=DEFAULT_SAMPLES, io_dtype="float32",
                  float_ops=(), labels=None, data_dir=None, isolate=False, overwrite=False,
                  output_kind=None):
    """Converts a Mixer and writes `output` plus its sidecar; returns a report dict.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    representative: a source of `export.data` ("default", "folder:PATH",
        "tfds:NAME[/SPLIT]", its training split), or a uint8/float array
        (N, H, W, 3) of RGB 0-255 images (used by quantize="int8").
    data_dir: the tfds data dir for a "tfds:" representative.
    isolate: convert in a child process (see `convert`).
    output_kind: "probabilities" or "logits"; None reads it from the model's
        graph (`common.output_kind`, which refuses a sigmoid or unknown head).
    target="gpu" refuses a graph with any op the LiteRT GPU path lacks (its
    CompiledModel GPU path fails on one rather than falling back), before
    anything is written. The report's "residency" gives, per target, the
    fraction of ops its accelerator would hold (`targets.residency`).
    """
    float_ops = _check_options(quantize, target, io_dtype, float_ops, num_samples)
    common.check_output_kind(output_kind)
    if not isinstance(isolate, bool):
        raise ValueError(f"isolate: expected True or False; got {isolate!r}")
    output = common.check_file_output(output, overwrite=overwrite, suffix=".tflite")
    files.check_output(metadata.sidecar_path(output), overwrite=overwrite)
    representative = common.fspath_source(representative)
    if isinstance(representative, str):
        from .data import check_source

        check_source(representative, data_dir=data_dir)
    net = inference.load_model(common.fspath(model), weights=weights)
    common.static_image_size(net)
    kind = common.output_kind(net, output_kind)
    transform = EvalTransform.of(net)  # calibration images as the checkpoint was evaluated
    names = labels_lib.class_names(int(net.output_shape[-1]), labels)
    images = None
    if quantize == "int8":
        images = representative_images(representative, transform, num_samples=num_samples,
                                       data_dir=data_dir)
    if quantize == "int8" and io_dtype == "float32" and kind == "probabilities":
        # int8 probabilities step by 1/256, which rounds most of a 1000-class
        # softmax to 0; with float output the one SOFTMAX op stays float.
        float_ops = tuple(dict.fromkeys(float_ops + ("SOFTMAX",)))
    if quantize == "int8" and io_dtype == "float32" and target == "cpu":
        float_ops = tuple(dict.fromkeys(float_ops + ("RSQRT",)))
    from .rebuild import rebuild_for_target

    net = rebuild_for_target(net, target, quantize)
    data = convert(net, quantize=quantize, images=images, io_dtype=io_dtype, float_ops=float_ops,
                   isolate=isolate)
    ops = targets.model_ops(data)
    unsupported = targets.unsupported_ops(ops, target)
    if target == "gpu" and unsupported:
        raise ValueError(
            f"target: the LiteRT GPU path cannot run {', '.join(unsupported)} and fails on a "
            f"graph it cannot hold whole; got target='gpu' for a graph with them")
    sidecar, contract = metadata.write_sidecar(
        output, data, model_name=net.name, labels=names, quantize=quantize, target=target,
        kind=kind, transform=transform, overwrite=overwrite)
    files.write_bytes(output, data)  # the sidecar first: a .tflite never lacks its own
    return {
        "path": output, "sidecar": sidecar, "bytes": len(data), "contract": contract,
        "ops": targets.op_counts(ops), "unsupported": unsupported,
        "xnnpack": targets.xnnpack_partitions(data), "residency": targets.residency(ops),
        "float_ops": list(float_ops),
    }


def _check_options(quantize, target, io_dtype, float_ops, num_samples):
    """Checks every option before any work; returns float_ops as op names."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize: expected one of {QUANTIZE_MODES}; got {quantize!r}")
    targets.check_target(target)
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype: expected one of {IO_DTYPES}; got {io_dtype!r}")
    if io_dtype != "float32" and quantize != "int8":
        raise ValueError(
            f"io_dtype: {io_dtype!r} input/output needs quantize='int8'; got quantize={quantize!r}")
    if target == "edgetpu" and quantize != "int8":
        raise ValueError(
            f"quantize: the Edge TPU runs only full-integer models, expected 'int8' for "
            f"target='edgetpu'; got {quantize!r}")
    if not (isinstance(num_samples, int) and num_samples >= MIN_SAMPLES):
        raise ValueError(f"num_samples: expected an int >= {MIN_SAMPLES}; got {num_samples!r}")
    ops = _float_op_names(float_ops)
    if ops and quantize != "int8":
        raise ValueError(f"float_ops: only applies to quantize='int8'; got quantize={quantize!r}")
    if ops and io_dtype != "float32":
        raise ValueError(
            f"float_ops: a model with float ops keeps float32 input/output; got io_dtype={io_dtype!r}")
    return ops


def _float_op_names(float_ops):
    from ai_edge_litert import schema_py_generated as schema

    if isinstance(float_ops, str):
        float_ops = [s for s in float_ops.split(",") if s]
    names = []
    for item in float_ops or ():
        ops = FLOAT_OP_PRESETS.get(item, (item,))
        for op in ops:
            if not hasattr(schema.BuiltinOperator, op):
                raise ValueError(
                    f"float_ops: expected presets {list(FLOAT_OP_PRESETS)} or TFLite op "
                    f"names (MEAN, ADD, ...); got {item!r}")
            names.append(op)
    return tuple(dict.fromkeys(names))


def representative_images(representative, transform, *, num_samples=DEFAULT_SAMPLES,
                          data_dir=None):
    """float32 (N, H, W, 3) calibration images; checks shape and count.

    transform: the model's `EvalTransform` (or its (H, W) for the paper's),
    applied to the images of a named source; an array is taken as it is."""
    transform = EvalTransform.coerce(transform)
    size = transform.size
    if isinstance(representative, str):
        from .data import load_images

        images, _, _ = load_images(representative, transform, count=num_samples, split="train",
                                   data_dir=data_dir)
        source = representative
    else:
        images, source = np.asarray(representative), "the given array"
        _check_pixels(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != (*size, 3):
        raise ValueError(
            f"representative: expected images of shape (N, {size[0]}, {size[1]}, 3) to match "
            f"the model; got {images.shape} from {source}")
    if len(images) < MIN_SAMPLES:
        raise ValueError(
            f"representative: expected at least {MIN_SAMPLES} images for calibration; "
            f"got {len(images)} from {source}")
    return images[:num_samples].astype(np.float32)


def _check_pixels(images):
    """Calibration arrays hold real RGB 0-255 values: a NaN gives the converter's
    own obscure error, an infinity crashes the process."""
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)) \
            or images.dtype == np.bool_:
        raise ValueError(f"representative: expected an int or float array of RGB 0-255 "
                         f"images; got dtype {images.dtype}")
    bad = ~np.isfinite(images) | (images < 0) | (images > 255)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"representative: expected finite pixel values in [0, 255]; got "
                         f"{images[index]!r} at index {index}")


def convert(model, *, quantize="none", images=None, io_dtype="float32", float_ops=(),
            isolate=False):
    """The .tflite bytes of `model` (static batch 1) in one quantization mode.

    isolate: run the converter in a child process. TFLiteConverter keeps
    memory after every call (tensorflow#122598); a child returns all of it
    when it exits, so converting many models or modes in one process stays flat.
    """
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        write_batch1_saved_model(model, saved)
        options = dict(quantize=quantize, io_dtype=io_dtype, float_ops=list(float_ops))
        if not isolate:
            return convert_saved_model(saved, images=images, **options)
        if images is not None:
            np.save(os.path.join(tmp, "calibration.npy"), np.asarray(images, np.float32))
        # A fresh interpreter, not multiprocessing: it works from any caller
        # (a script without a __main__ guard, a notebook) and imports only this.
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, tmp, json.dumps(options)],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if child.returncode != 0:
            why = child.stderr.strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"TFLite conversion failed in its child process "
                               f"(exit code {child.returncode}): {why[0]}")
        with open(os.path.join(tmp, "model.tflite"), "rb") as f:
            return f.read()


_CHILD = "import sys; from keras_mixer.export.tflite import _convert_in_child; " \
         "_convert_in_child(*sys.argv[1:])"


def _convert_in_child(tmp, options):
    options = json.loads(options)
    calibration = os.path.join(tmp, "calibration.npy")
    images = np.load(calibration) if os.path.exists(calibration) else None
    data = convert_saved_model(os.path.join(tmp, "saved_model"), images=images, **options)
    with open(os.path.join(tmp, "model.tflite"), "wb") as f:
        f.write(data)


def convert_saved_model(path, *, quantize="none", images=None, io_dtype="float32",
                        float_ops=()):
    """The .tflite bytes of the batch-1 SavedModel at `path` (see `convert`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize != "int8":
        return converter.convert()

    def dataset():
        for image in images:
            yield [image[None]]

    converter.representative_dataset = dataset
    if float_ops:
        # The documented selective-quantization path: calibrate, then
        # quantize everything but the denylisted ops.
        with warnings.catch_warnings():
            # The debugger builds a tf.lite.Interpreter internally, which
            # warns about its deprecation; we run files with LiteRT.
            warnings.simplefilter("ignore", UserWarning)
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_ops=list(float_ops)))
        return debugger.get_nondebug_quantized_model()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io_dtype)
    converter.inference_output_type = getattr(tf, io_dtype)
    return converter.convert()


def write_batch1_saved_model(model, path):
    """A SavedModel whose one signature takes a (1, H, W, 3) float32 image."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="image")
    archive.add_endpoint("serve", lambda image: model(image, training=False), input_signature=[spec])
    archive.write_out(path, verbose=False)
