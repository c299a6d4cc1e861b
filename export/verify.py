"""Checks an exported file against its Keras model on held-out images.

The file runs in its own runtime (`export.runtimes`: LiteRT for .tflite,
ONNX Runtime for .onnx, OpenVINO for .xml), fed exactly as its sidecar says,
one image per call, so "latency_ms" is batch-1 latency in that runtime.
OpenVINO runs pinned to float32 unless `precision="default"`.

Verification gates: by default `verify` raises `VerificationFailed` (a
ValueError carrying the report) when the file misses its thresholds, chosen
by what the file is (`GATES`): a float file must give Keras' outputs (top-1
agreement and max abs error), a quantized one Keras' answers and, where the
images have labels, Keras' accuracy within a point (the project's int8 bar on
the digits). `gate=False` only reports; `thresholds` replaces some of them.
"""

import os
import time

import numpy as np

from keras_mixer import inference
from keras_mixer.preprocessing import EvalTransform

from . import common
from .runtimes import DEFAULT_THREADS, LiteModel, open_runtime  # noqa: F401 (LiteModel: public here)

# The report's accuracy key per file suffix ("tflite_accuracy", ...).
FORMAT_NAMES = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}
# What a file must reach, by kind: "float" (float32 .tflite, ONNX, OpenVINO
# pinned to float32: the same function, summed in another order), "float16"
# (weights rounded to ~3 digits: same answers, outputs off by more than float32's
# bar), "quantized" (int8 weights or activations, OpenVINO at the CPU's own
# precision). accuracy_drop applies only when the images have labels.
GATES = {
    "float": {"top1_agreement": 0.99, "max_abs_error": 1e-3, "accuracy_drop": None},
    "float16": {"top1_agreement": 0.98, "max_abs_error": None, "accuracy_drop": 0.01},
    "quantized": {"top1_agreement": 0.9, "max_abs_error": None, "accuracy_drop": 0.01},
}

# The accuracy drop a gate allows is at least this many images of the sample.
MIN_IMAGES_DROPPED = 2


class VerificationFailed(ValueError):
    """An exported file missed its verification thresholds; `.report` holds the report."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def verify(path, model, *, weights=None, images="default", count=100,
           num_threads=DEFAULT_THREADS, precision="float32", data_dir=None, gate=True,
           thresholds=None):
    """Runs the exported file `path` and the Keras `model` on `count` held-out images.

    images: a source of `export.data` ("default", "folder:PATH",
        "tfds:NAME[/SPLIT]", its test split), or an array (N, H, W, 3) with
        optional labels via a (images, labels) tuple.
    data_dir: the tfds data dir for a "tfds:" source.
    precision: OpenVINO only, "float32" (pinned) or "default" (the CPU's own).
    gate: raise `VerificationFailed` (a ValueError with the report as `.report`)
        when a threshold is missed; False: only report.
    thresholds: {"top1_agreement": min, "max_abs_error": max, "accuracy_drop":
        max} replacing the file kind's defaults (`GATES`); None skips one.
    Returns {"images", "runtime", "top1_agreement", "keras_accuracy",
    "<format>_accuracy" (tflite, onnx or openvino), "max_abs_error",
    "output_kind", "bytes", "latency_ms": {median, min, max, threads},
    "gate": {"kind", "thresholds", "passed", "failures"}}.
    """
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"count: expected an int >= 1; got {count!r}")
    if not isinstance(gate, bool):
        raise ValueError(f"gate: expected True or False; got {gate!r}")
    _check_thresholds(thresholds)
    path = common.fspath(path)
    if isinstance(images, str):
        from .data import check_source

        check_source(images, data_dir=data_dir, arg="images")
    net = inference.load_model(common.fspath(model), weights=weights)
    return check_file(path, net, images=images, count=count, num_threads=num_threads,
                      precision=precision, data_dir=data_dir, gate=gate, thresholds=thresholds,
                      kind=_file_kind(path, precision))


def check_file(path, net, *, images, count, num_threads, precision, data_dir, gate, thresholds,
               kind):
    """`verify` after its checks, on a loaded model `net`, under the gate of `kind`
    (a key of GATES): the exporters check a draft (with no sidecar yet) with it."""
    exported = open_runtime(path, num_threads=num_threads, precision=precision)
    if common.static_image_size(net) != exported.image_size:
        raise ValueError(
            f"model: takes {common.static_image_size(net)} images but {path!r} takes "
            f"{exported.image_size}")
    x, y = _held_out(images, EvalTransform.of(net), count, data_dir)
    expected = np.asarray(net.predict(x.astype(np.float32), batch_size=32, verbose=0))
    got, times = [], []
    for image in x.astype(np.float32):
        start = time.perf_counter()
        got.append(exported.predict(image[None])[0])
        times.append(time.perf_counter() - start)
    got = np.stack(got)
    ms = np.asarray(times) * 1e3
    accuracy_key = FORMAT_NAMES[os.path.splitext(path)[1]] + "_accuracy"
    report = {
        "images": len(x), "runtime": exported.runtime, **agreement(expected, got),
        "keras_accuracy": None, accuracy_key: None,
        "output_kind": _output_kind(path, net),
        "bytes": file_bytes(path),
        "latency_ms": {"median": float(np.median(ms)), "min": float(ms.min()),
                       "max": float(ms.max()), "threads": num_threads},
    }
    if y is not None:
        report["keras_accuracy"] = float(np.mean(expected.argmax(-1) == y))
        report[accuracy_key] = float(np.mean(got.argmax(-1) == y))
    report["gate"] = _gate(report, accuracy_key, kind, thresholds)
    if gate and not report["gate"]["passed"]:
        raise VerificationFailed(
            f"{path}: failed verification against the Keras model on {len(x)} images: "
            f"{'; '.join(report['gate']['failures'])} (pass gate=False / --no-gate to "
            f"only report, or other thresholds)", report)
    return report


def _check_thresholds(thresholds):
    if thresholds is None:
        return
    if not isinstance(thresholds, dict) or set(thresholds) - set(GATES["float"]):
        raise ValueError(f"thresholds: expected a dict with keys among {list(GATES['float'])}; "
                         f"got {thresholds!r}")
    for key, value in thresholds.items():
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"thresholds: expected None or a number >= 0 for {key!r}; "
                             f"got {value!r}")


def _file_kind(path, precision):
    """The key of GATES for an exported file."""
    from .metadata import read_contract

    try:
        quantize = read_contract(path).get("quantize")
    except FileNotFoundError:  # no sidecar: the lenient gate for a .tflite
        quantize = None if path.endswith(".tflite") else "none"
    if path.endswith(".tflite") or quantize == "int8":
        return {"none": "float", "float16": "float16"}.get(quantize, "quantized")
    # A float server file (no "quantize" in its sidecar before int8 existed).
    if path.endswith(".xml") and precision != "float32":
        return "quantized"
    return "float"


def _output_kind(path, net):
    """The sidecar's output kind (what the export decided), else the graph's."""
    from .metadata import read_contract

    try:
        return read_contract(path)["output"]["kind"]
    except FileNotFoundError:
        return common.output_kind(net)


def _gate(report, accuracy_key, kind, thresholds):
    limits = {**GATES[kind], **(thresholds or {})}
    failures = []
    if limits["top1_agreement"] is not None and report["top1_agreement"] < limits["top1_agreement"]:
        failures.append(f"top-1 agreement {report['top1_agreement']:.3f} < "
                        f"{limits['top1_agreement']}")
    if limits["max_abs_error"] is not None and report["max_abs_error"] > limits["max_abs_error"]:
        failures.append(f"max abs error {report['max_abs_error']:.3g} > "
                        f"{limits['max_abs_error']}")
    if limits["accuracy_drop"] is not None and report["keras_accuracy"] is not None:
        drop = report["keras_accuracy"] - report[accuracy_key]
        # Never less than two images' worth: on 50 images one point is half an
        # image, and int8's near-ties flip a few answers either way.
        allowed = max(limits["accuracy_drop"], MIN_IMAGES_DROPPED / report["images"])
        if drop > allowed + 1e-9:
            failures.append(f"accuracy {report[accuracy_key]:.3f} is {drop:.3f} below Keras' "
                            f"{report['keras_accuracy']:.3f} (allowed {allowed:.3g})")
    return {"kind": kind, "thresholds": limits, "passed": not failures, "failures": failures}


# The name from before the server formats; it verifies any of them.
verify_tflite = verify


def agreement(expected, got):
    """{"max_abs_error", "top1_agreement"} of two (N, classes) outputs."""
    expected, got = np.asarray(expected), np.asarray(got)
    return {"max_abs_error": float(np.max(np.abs(got - expected))),
            "top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1)))}


def file_bytes(path):
    """Size of an exported model: an OpenVINO .xml counts its .bin too."""
    weights = os.path.splitext(path)[0] + ".bin"
    extra = os.path.getsize(weights) if path.endswith(".xml") and os.path.isfile(weights) else 0
    return os.path.getsize(path) + extra


def _held_out(images, transform, count, data_dir=None):
    size = transform.size
    if isinstance(images, str):
        from .data import load_images

        x, y, _ = load_images(images, transform, count=count, split="test", data_dir=data_dir,
                              arg="images")
        return x, y
    x, y = images if isinstance(images, tuple) else (images, None)
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != (*size, 3):
        raise ValueError(f"images: expected shape (N, {size[0]}, {size[1]}, 3); got {x.shape}")
    return x[:count], None if y is None else np.asarray(y)[:count]
