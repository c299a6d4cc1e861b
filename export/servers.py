"""Keras Mixer -> ONNX and OpenVINO IR for servers, through Keras' own exporters.

    report = export_onnx("mixer.keras", "out/mixer.onnx")
    report = export_openvino("B/16", "out/mixer.xml", weights="imagenet")

Both call `model.export(path, format="onnx"|"openvino")` (tf2onnx, OpenVINO's
converter) and keep the model's input contract: float32 NHWC, RGB 0-255
(the rescaling is the model's first layer), a dynamic batch, and the model's
own output (probabilities or logits). OpenVINO writes `mixer.xml` with its
weights in `mixer.bin` beside it.

Each file is written to a scratch directory beside the output, opened in its
own runtime (ONNX Runtime; OpenVINO pinned to float32) and compared with the
Keras model on CHECK_IMAGES seeded random images before anything is moved
into place: if the probabilities differ by more than `tolerance`, it raises
and nothing is written. Then the sidecar `<model>.json` (`export.metadata`:
tensor names, labels, output kind), then the files, each by a rename.

`export_onnx(..., quantize="int8")` quantizes the exported file with ONNX
Runtime's static post-training quantization (QDQ, int8 weights per output
channel, uint8 activations, the MatMuls and Gemms only: LayerNorm, GELU and
softmax stay float, as NNCF's transformer preset keeps them), calibrated on
`representative` images through the checkpoint's own preprocessing, as
TFLite int8 is (`tflite.representative_images`). Its gate is the int8 one
of `export verify` (`verify.GATES["quantized"]`: Keras' answers, and its
accuracy within a point where the images have labels), run in ONNX Runtime
on the held-out split of the same source (the embedded digits test split
by default, or of a representative array) before anything is written;
`gate=False` (--no-gate) only reports. The sidecar says "quantize": "int8".
"""

import logging
import os
import tempfile

import numpy as np

from keras_mixer import files, inference
from keras_mixer import labels as labels_lib
from keras_mixer.preprocessing import EvalTransform

from . import common, metadata
from .runtimes import DEFAULT_THREADS, open_runtime
from .verify import agreement

FORMATS = ("onnx", "openvino")
QUANTIZE_MODES = ("none", "int8")
# Held-out images the int8 gate runs on (`export verify`'s default count).
GATE_IMAGES = 100
# float32 in another runtime reorders sums; 1e-4 on probabilities is the
# project's float32 bar (the checkpoint-fidelity one, too).
DEFAULT_TOLERANCE = 1e-4
CHECK_IMAGES = 8


def export_onnx(model, output, *, weights=None, labels=None, opset=None,
                tolerance=DEFAULT_TOLERANCE, num_threads=DEFAULT_THREADS, overwrite=False,
                output_kind=None, quantize="none", representative="default",
                num_samples=None, data_dir=None, gate=True):
    """Writes `output` (.onnx) and its sidecar; returns a report dict.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    opset: the ONNX opset (None: tf2onnx's default).
    tolerance: the largest probability difference from Keras that ONNX Runtime
        may show on the check images (None: report it, never raise).
    output_kind: "probabilities" or "logits"; None reads it from the model's
        graph (`common.output_kind`, which refuses a sigmoid or unknown head).
    quantize: "none" or "int8" (static int8, see the module's docstring; then
        `tolerance` does not apply, the int8 gate does).
    representative, num_samples, data_dir: int8 calibration images, as for
        `export_tflite` (num_samples None: its DEFAULT_SAMPLES).
    gate: int8 only: refuse (`verify.VerificationFailed`, nothing written) a
        file that misses the int8 gate; False: write it and report.
    The report of an int8 export has "verify", the gate's report.
    """
    if opset is not None and not (isinstance(opset, int) and opset >= 13):
        raise ValueError(f"opset: expected None or an int >= 13; got {opset!r}")
    int8 = _check_int8(quantize, representative, num_samples, data_dir, gate)
    return _export("onnx", model, output, weights=weights, labels=labels, tolerance=tolerance,
                   num_threads=num_threads, overwrite=overwrite, output_kind=output_kind,
                   int8=int8, opset_version=opset)


def export_openvino(model, output, *, weights=None, labels=None,
                    tolerance=DEFAULT_TOLERANCE, num_threads=DEFAULT_THREADS, overwrite=False,
                    output_kind=None):
    """Writes `output` (.xml), its weights (.bin) and its sidecar; returns a report.

    The file holds float32 weights; OpenVINO's CPU plugin chooses the inference
    precision when it compiles it (bfloat16 on AVX512_BF16/AMX CPUs), see
    `runtimes.OPENVINO_PRECISIONS`. Arguments as for `export_onnx`.
    """
    return _export("openvino", model, output, weights=weights, labels=labels,
                   tolerance=tolerance, num_threads=num_threads, overwrite=overwrite,
                   output_kind=output_kind, int8=None)


def _check_int8(quantize, representative, num_samples, data_dir, gate):
    """The int8 options, checked before any work (None for quantize="none")."""
    from . import tflite

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize: expected one of {QUANTIZE_MODES}; got {quantize!r}")
    if not isinstance(gate, bool):
        raise ValueError(f"gate: expected True or False; got {gate!r}")
    num_samples = tflite.DEFAULT_SAMPLES if num_samples is None else num_samples
    if not (isinstance(num_samples, int) and num_samples >= tflite.MIN_SAMPLES):
        raise ValueError(
            f"num_samples: expected an int >= {tflite.MIN_SAMPLES}; got {num_samples!r}")
    representative = common.fspath_source(representative)
    if isinstance(representative, str):
        from .data import check_source

        check_source(representative, data_dir=data_dir)
    if quantize == "none":
        return None
    return {"representative": representative, "num_samples": num_samples,
            "data_dir": data_dir, "gate": gate}


def _export(file_format, model, output, *, weights, labels, tolerance, num_threads, overwrite,
            output_kind, int8, **export_args):
    suffix = {"onnx": ".onnx", "openvino": ".xml"}[file_format]
    output = common.fspath(output)
    outputs = _output_files(output, suffix)
    for path in outputs:
        common.check_file_output(path, overwrite=overwrite, suffix=os.path.splitext(path)[1])
    common.check_output_kind(output_kind)
    files.check_output(metadata.sidecar_path(output), overwrite=overwrite)
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance: expected None or a number > 0; got {tolerance!r}")
    if not (isinstance(num_threads, int) and num_threads >= 1):
        raise ValueError(f"num_threads: expected an int >= 1; got {num_threads!r}")
    net = inference.load_model(common.fspath(model), weights=weights)
    size = common.static_image_size(net)
    names = labels_lib.class_names(int(net.output_shape[-1]), labels)
    kind = common.output_kind(net, output_kind)
    transform = EvalTransform.of(net)
    calibration = None
    if int8:
        from .tflite import representative_images

        calibration = representative_images(int8["representative"], transform,
                                             num_samples=int8["num_samples"],
                                             data_dir=int8["data_dir"])
    images = np.random.default_rng(0).uniform(0, 255, (CHECK_IMAGES, *size, 3)).astype(np.float32)
    # Keras' ONNX exporter refuses a model that was never called; the call
    # also gives the reference outputs.
    expected = np.asarray(net(images, training=False))
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{os.path.basename(output)}.", suffix=".partial",
                                     dir=parent) as scratch:
        draft = os.path.join(scratch, "model" + suffix)
        net.export(draft, format=file_format, verbose=False, **export_args)
        gate_report = None
        if int8:
            _quantize_onnx(draft, calibration)
            gate_report = _int8_gate(draft, net, int8, num_threads)
        runtime = open_runtime(draft, num_threads=num_threads)
        check = agreement(_probabilities(expected, kind), _probabilities(runtime.predict(images), kind))
        if not int8 and tolerance is not None and check["max_abs_error"] > tolerance:
            raise ValueError(
                f"tolerance: {runtime.runtime} differs from Keras by {check['max_abs_error']:.3g} "
                f"in probabilities on {CHECK_IMAGES} check images; expected <= {tolerance} "
                f"(pass tolerance=None to export anyway)")
        inp, out = runtime.io()
        del runtime  # OpenVINO maps the .bin; let go of it before the rename
        sidecar, contract = metadata.write_contract(
            output, inp, out, file_format=file_format, model_name=net.name, labels=names,
            kind=kind, transform=transform, overwrite=overwrite,
            model_file=os.path.join(scratch, "model" + suffix),
            **({"quantize": "int8"} if int8 else {}))
        # Weights before the graph: an .xml never points at a missing .bin.
        for path in reversed(outputs):
            with files.atomic_path(path) as tmp:
                os.replace(os.path.join(scratch, "model" + os.path.splitext(path)[1]), tmp)
    return {"path": output, "sidecar": sidecar, "format": file_format,
            "bytes": sum(os.path.getsize(p) for p in outputs), "contract": contract,
            "check": {"images": CHECK_IMAGES, "compared": "probabilities", **check},
            **({"verify": gate_report} if int8 else {})}


def _quantize_onnx(path, images):
    """Replaces the float .onnx at `path` by its static int8 (QDQ) quantization."""
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self, name):
            self.batches = iter({name: image[None]} for image in images)

        def get_next(self):
            return next(self.batches, None)

    name = open_runtime(path).io()[0]["name"]
    quantized = path + ".int8.onnx"
    logging.disable(logging.WARNING)  # quiet: it advises a shape pre-pass Keras' file needs not
    try:
        q.quantize_static(path, quantized, Reader(name), quant_format=q.QuantFormat.QDQ,
                          per_channel=True, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                          calibrate_method=q.CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    os.replace(quantized, path)


def _int8_gate(path, net, int8, num_threads):
    """export verify's int8 gate on the draft, on the held-out split of the
    calibration source (the embedded digits for an array)."""
    from .verify import check_file

    source = int8["representative"] if isinstance(int8["representative"], str) else "default"
    return check_file(path, net, images=source, count=GATE_IMAGES, num_threads=num_threads,
                      precision="float32", data_dir=int8["data_dir"], gate=int8["gate"],
                      thresholds=None, kind="quantized")


def _output_files(output, suffix):
    """The files an export writes: [output] or, for OpenVINO, [.xml, .bin]."""
    if not (isinstance(output, str) and output.endswith(suffix)):
        raise ValueError(f"output: expected a path ending in {suffix}; got {output!r}")
    if suffix == ".xml":
        return [output, output[:-len(".xml")] + ".bin"]
    return [output]


def _probabilities(outputs, kind):
    if kind == "probabilities":
        return np.asarray(outputs)
    shifted = np.exp(outputs - np.max(outputs, axis=-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)
