"""Checks an exported file against its Keras model on held-out images.

The file runs in its own runtime (`export.runtimes`: LiteRT for .tflite,
ONNX Runtime for .onnx, OpenVINO for .xml), fed exactly as its sidecar says,
one image per call, so "latency_ms" is batch-1 latency in that runtime.
OpenVINO runs pinned to float32 unless `precision="default"`.
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


def verify(path, model, *, weights=None, images="default", count=100,
           num_threads=DEFAULT_THREADS, precision="float32", data_dir=None):
    """Runs the exported file `path` and the Keras `model` on `count` held-out images.

    images: a source of `export.data` ("default", "folder:PATH",
        "tfds:NAME[/SPLIT]", its test split), or an array (N, H, W, 3) with
        optional labels via a (images, labels) tuple.
    data_dir: the tfds data dir for a "tfds:" source.
    precision: OpenVINO only, "float32" (pinned) or "default" (the CPU's own).
    Returns {"images", "runtime", "top1_agreement", "keras_accuracy",
    "<format>_accuracy" (tflite, onnx or openvino), "max_abs_error",
    "output_kind", "bytes", "latency_ms": {median, min, max, threads}}.
    """
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"count: expected an int >= 1; got {count!r}")
    if isinstance(images, str):
        from .data import check_source

        check_source(images, data_dir=data_dir, arg="images")
    exported = open_runtime(path, num_threads=num_threads, precision=precision)
    net = inference.load_model(model, weights=weights)
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
        "output_kind": common.output_kind(net),
        "bytes": file_bytes(path),
        "latency_ms": {"median": float(np.median(ms)), "min": float(ms.min()),
                       "max": float(ms.max()), "threads": num_threads},
    }
    if y is not None:
        report["keras_accuracy"] = float(np.mean(expected.argmax(-1) == y))
        report[accuracy_key] = float(np.mean(got.argmax(-1) == y))
    return report


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
