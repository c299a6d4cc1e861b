"""Checks a .tflite file against its Keras model on held-out images.

The file runs in LiteRT (`ai_edge_litert`, the successor of tflite-runtime:
the standalone interpreter a phone or board has, no full TensorFlow), fed
exactly as the sidecar contract says (quantized inputs are quantized with the
file's own scale and zero point, outputs dequantized the same way).
"""

import os
import time

import numpy as np

from keras_mixer import inference

from . import common

# Interpreter threads for latency: a phone's big cores, and what the
# benchmark uses (2 threads, XNNPACK).
DEFAULT_THREADS = 2


class LiteModel:
    """A .tflite file in LiteRT, taking RGB 0-255 images one at a time."""

    def __init__(self, path, *, num_threads=DEFAULT_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.isfile(path):
            raise FileNotFoundError(f"tflite: no such file: {path!r}")
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        (self.input,), (self.output,) = (self.interpreter.get_input_details(),
                                         self.interpreter.get_output_details())

    @property
    def image_size(self):
        return tuple(int(d) for d in self.input["shape"][1:3])

    def __call__(self, image):
        """One (H, W, 3) image in [0, 255] -> float outputs (classes,)."""
        self.interpreter.set_tensor(self.input["index"], self.quantize(image[None]))
        self.interpreter.invoke()
        return self.dequantize(self.interpreter.get_tensor(self.output["index"])[0])

    def quantize(self, x):
        dtype = self.input["dtype"]
        scale, zero_point = self.input["quantization"]
        if dtype == np.float32:
            return x.astype(np.float32)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def dequantize(self, y):
        scale, zero_point = self.output["quantization"]
        if self.output["dtype"] == np.float32:
            return y
        return (y.astype(np.float32) - zero_point) * scale


def verify_tflite(tflite, model, *, weights=None, images="default", count=100,
                  num_threads=DEFAULT_THREADS, data_dir=None):
    """Runs `tflite` and the Keras `model` on `count` held-out images.

    images: a source of `export.data` ("default", "folder:PATH",
        "tfds:NAME[/SPLIT]", its test split), or an array (N, H, W, 3) with
        optional labels via a (images, labels) tuple.
    data_dir: the tfds data dir for a "tfds:" source.
    Returns {"images", "top1_agreement", "keras_accuracy", "tflite_accuracy",
    "max_abs_error", "output_kind", "bytes", "latency_ms": {median, min, max}}.
    """
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"count: expected an int >= 1; got {count!r}")
    if isinstance(images, str):
        from .data import check_source

        check_source(images, data_dir=data_dir, arg="images")
    lite = LiteModel(tflite, num_threads=num_threads)
    net = inference.load_model(model, weights=weights)
    if common.static_image_size(net) != lite.image_size:
        raise ValueError(
            f"model: takes {common.static_image_size(net)} images but {tflite!r} takes "
            f"{lite.image_size}")
    x, y = _held_out(images, lite.image_size, count, data_dir)
    expected = np.asarray(net.predict(x.astype(np.float32), batch_size=32, verbose=0))
    got, times = [], []
    for image in x.astype(np.float32):
        start = time.perf_counter()
        got.append(lite(image))
        times.append(time.perf_counter() - start)
    got = np.stack(got)
    ms = np.asarray(times) * 1e3
    report = {
        "images": len(x),
        "top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
        "keras_accuracy": None, "tflite_accuracy": None,
        "max_abs_error": float(np.max(np.abs(got - expected))),
        "output_kind": common.output_kind(net),
        "bytes": os.path.getsize(tflite),
        "latency_ms": {"median": float(np.median(ms)), "min": float(ms.min()),
                       "max": float(ms.max()), "threads": num_threads},
    }
    if y is not None:
        report["keras_accuracy"] = float(np.mean(expected.argmax(-1) == y))
        report["tflite_accuracy"] = float(np.mean(got.argmax(-1) == y))
    return report


def _held_out(images, size, count, data_dir=None):
    if isinstance(images, str):
        from .data import load_images

        x, y, _ = load_images(images, size, count=count, split="test", data_dir=data_dir,
                              arg="images")
        return x, y
    x, y = images if isinstance(images, tuple) else (images, None)
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != (*size, 3):
        raise ValueError(f"images: expected shape (N, {size[0]}, {size[1]}, 3); got {x.shape}")
    return x[:count], None if y is None else np.asarray(y)[:count]
