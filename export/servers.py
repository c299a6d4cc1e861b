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
"""

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
# float32 in another runtime reorders sums; 1e-4 on probabilities is the
# project's float32 bar (the checkpoint-fidelity one, too).
DEFAULT_TOLERANCE = 1e-4
CHECK_IMAGES = 8


def export_onnx(model, output, *, weights=None, labels=None, opset=None,
                tolerance=DEFAULT_TOLERANCE, num_threads=DEFAULT_THREADS, overwrite=False,
                output_kind=None):
    """Writes `output` (.onnx) and its sidecar; returns a report dict.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    opset: the ONNX opset (None: tf2onnx's default).
    tolerance: the largest probability difference from Keras that ONNX Runtime
        may show on the check images (None: report it, never raise).
    output_kind: "probabilities" or "logits"; None reads it from the model's
        graph (`common.output_kind`, which refuses a sigmoid or unknown head).
    """
    if opset is not None and not (isinstance(opset, int) and opset >= 13):
        raise ValueError(f"opset: expected None or an int >= 13; got {opset!r}")
    return _export("onnx", model, output, weights=weights, labels=labels, tolerance=tolerance,
                   num_threads=num_threads, overwrite=overwrite, output_kind=output_kind,
                   opset_version=opset)


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
                   output_kind=output_kind)


def _export(file_format, model, output, *, weights, labels, tolerance, num_threads, overwrite,
            output_kind, **export_args):
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
        runtime = open_runtime(draft, num_threads=num_threads)
        check = agreement(_probabilities(expected, kind), _probabilities(runtime.predict(images), kind))
        if tolerance is not None and check["max_abs_error"] > tolerance:
            raise ValueError(
                f"tolerance: {runtime.runtime} differs from Keras by {check['max_abs_error']:.3g} "
                f"in probabilities on {CHECK_IMAGES} check images; expected <= {tolerance} "
                f"(pass tolerance=None to export anyway)")
        inp, out = runtime.io()
        del runtime  # OpenVINO maps the .bin; let go of it before the rename
        sidecar, contract = metadata.write_contract(
            output, inp, out, file_format=file_format, model_name=net.name, labels=names,
            kind=kind, transform=EvalTransform.of(net), overwrite=overwrite,
            model_file=os.path.join(scratch, "model" + suffix))
        # Weights before the graph: an .xml never points at a missing .bin.
        for path in reversed(outputs):
            with files.atomic_path(path) as tmp:
                os.replace(os.path.join(scratch, "model" + os.path.splitext(path)[1]), tmp)
    return {"path": output, "sidecar": sidecar, "format": file_format,
            "bytes": sum(os.path.getsize(p) for p in outputs), "contract": contract,
            "check": {"images": CHECK_IMAGES, "compared": "probabilities", **check}}


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
