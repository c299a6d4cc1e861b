"""Exported files in their own runtimes, behind one small interface.

    model = open_runtime("out/mixer.onnx", num_threads=2)   # .tflite, .onnx or .xml
    probs = model.predict(images)     # (N, H, W, 3) RGB 0-255 -> (N, classes) float32

.tflite runs in LiteRT (`ai_edge_litert`, tflite-runtime's successor: the
interpreter a phone or board has), .onnx in ONNX Runtime (CPU provider) and an
OpenVINO .xml (+ .bin) in OpenVINO on the CPU. Each model has `image_size`,
`runtime` and `predict`; the server formats have `io()` (their input and
output as the sidecar describes them; `metadata.io_contract` reads a
.tflite's). LiteModel also takes one image at a time, fed exactly as the
sidecar says (quantized inputs with the file's own scale and zero point).
"""

import os

import numpy as np

# Interpreter threads for latency: a phone's big cores, and what the
# benchmarks use on their 2-core machines.
DEFAULT_THREADS = 2
# OpenVINO's CPU plugin picks its own inference precision: bfloat16 on CPUs
# with AVX512_BF16 or AMX, float32 elsewhere. "float32" pins it, for
# verification; "default" is what a server running the file gets.
OPENVINO_PRECISIONS = ("float32", "default")
RUNTIMES = {".tflite": "litert", ".onnx": "onnxruntime", ".xml": "openvino"}


def open_runtime(path, *, num_threads=DEFAULT_THREADS, precision="float32"):
    """The runtime model for `path`, picked by its suffix (see RUNTIMES)."""
    suffix = os.path.splitext(str(path))[1]
    if suffix not in RUNTIMES:
        raise ValueError(f"path: expected a file ending in {' or '.join(RUNTIMES)}; got {path!r}")
    if not (isinstance(num_threads, int) and num_threads >= 1):
        raise ValueError(f"num_threads: expected an int >= 1; got {num_threads!r}")
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"precision: expected one of {OPENVINO_PRECISIONS}; got {precision!r}")
    if precision != "float32" and suffix != ".xml":
        raise ValueError(f"precision: only OpenVINO files take {precision!r}; got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    if suffix == ".tflite":
        return LiteModel(path, num_threads=num_threads)
    if suffix == ".onnx":
        return OnnxModel(path, num_threads=num_threads)
    return OpenVinoModel(path, num_threads=num_threads, precision=precision)


class LiteModel:
    """A .tflite file in LiteRT, taking RGB 0-255 images one at a time."""

    runtime = "litert"

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

    def predict(self, images):
        # The file has a static batch of 1 (one clean XNNPACK graph).
        return np.stack([self(image) for image in np.asarray(images, np.float32)])

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


class OnnxModel:
    """An .onnx file in ONNX Runtime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, path, *, num_threads=DEFAULT_THREADS):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        (self.input,), (self.output,) = self.session.get_inputs(), self.session.get_outputs()

    @property
    def image_size(self):
        return tuple(int(d) for d in self.input.shape[1:3])

    def predict(self, images):
        return self.session.run([self.output.name],
                                {self.input.name: np.asarray(images, np.float32)})[0]

    def io(self):
        def tensor(node):
            # A dynamic dimension is a string (its symbolic name) in ONNX Runtime.
            shape = [d if isinstance(d, int) else None for d in node.shape]
            dtype = {"tensor(float)": "float32"}.get(node.type, node.type)
            return {"shape": shape, "dtype": dtype, "quantization": None, "name": node.name}

        return tensor(self.input), tensor(self.output)


class OpenVinoModel:
    """An OpenVINO .xml (+ .bin beside it) compiled for the CPU."""

    runtime = "openvino"

    def __init__(self, path, *, num_threads=DEFAULT_THREADS, precision="float32"):
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": num_threads}
        if precision == "float32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = ov.Core().compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        (self.input,), (self.output,) = self.compiled.inputs, self.compiled.outputs

    @property
    def inference_precision(self):
        """What the CPU plugin actually runs in: "f32", "bf16", ..."""
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    @property
    def image_size(self):
        shape = self.input.get_partial_shape()
        return int(shape[1].get_length()), int(shape[2].get_length())

    def predict(self, images):
        self.request.infer({0: np.asarray(images, np.float32)})
        return np.array(self.request.get_output_tensor(0).data)

    def io(self):
        def tensor(port):
            shape = [int(d.get_length()) if d.is_static else None
                     for d in port.get_partial_shape()]
            dtype = np.dtype(port.get_element_type().to_dtype()).name
            return {"shape": shape, "dtype": dtype, "quantization": None,
                    "name": port.get_any_name()}

        return tensor(self.input), tensor(self.output)
