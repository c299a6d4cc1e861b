"""The contract an app reads: labels, input and output of an exported file.

Written as a sidecar JSON next to the model: for `out/mixer.tflite` the
sidecar is `out/mixer.json` (the name the Android demo looks for); the server
formats keep their suffix, `out/mixer.onnx.json` and `out/mixer.xml.json`, so
the README's exports of one model to `out/mixer.*` do not collide (see
`sidecar_path`).
`read_contract(path)` reads it back (path: the .tflite or the .json).
Schema "keras-mixer-tflite/1" (kept exactly; the Android demo parses it):

    {"format": "keras-mixer-tflite/1",
     "input":  {"shape": [1, H, W, 3], "dtype": "float32"|"uint8"|"int8",
                "color": "RGB", "range": [0, 255],
                "quantization": {"scale": float, "zero_point": int} or null},
     "output": {"shape": [1, classes], "dtype": "float32"|"uint8"|"int8",
                "kind": "probabilities"|"logits",
                "quantization": {"scale": float, "zero_point": int} or null},
     "labels": ["...", ...], "model": "<model name>",
     "quantize": "none|float16|dynamic|int8" (or a LiteRT Quantizer recipe name),
     "target": "cpu|gpu|nnapi|edgetpu",
     "preprocessing": {"crop_fraction": float in (0, 1],
                       "interpolation": "bicubic"|"bilinear"}}

- "range" is the range of the pixel values the app feeds, before any
  quantization: the model rescales 0-255 to [-1, 1] itself. With a quantized
  input (uint8/int8) the app writes round(pixel / scale + zero_point).
- "quantization" holds the parameters read back from the converted file's
  input/output details, null for float tensors.
- An output of "kind" "probabilities" sums to 1 (after dequantizing).
- "model_sha256" and "model_bytes" are the model file's (the .tflite, .onnx
  or .xml) SHA-256 and size: the sidecar is renamed into place before the
  model, so a failed or killed second rename would leave an old model beside
  a new sidecar; `read_contract` refuses such a pair, naming both files.
  Sidecars written before these fields existed lack them and are not checked.
- "preprocessing" is the checkpoint's eval transform (`EvalTransform`): resize
  so that the H x W centre crop is `crop_fraction` of the image, with
  `interpolation`, then crop. Sidecars written before it existed lack it;
  readers then use the paper's (0.875, bicubic): `contract_transform`.

The server formats (`export.servers`: `out/mixer.onnx`, OpenVINO's
`out/mixer.xml` + `.bin`) get the same sidecar with their own "format"
("keras-mixer-onnx/1", "keras-mixer-openvino/1"), a dynamic batch (null)
as the first dimension of both shapes, float32 tensors (quantization null),
each tensor's "name" in the runtime (the key a caller feeds and reads),
and no "quantize" or "target".
"""

FORMAT = "keras-mixer-tflite/1"
FORMATS = {"tflite": FORMAT, "onnx": "keras-mixer-onnx/1",
           "openvino": "keras-mixer-openvino/1"}

import hashlib
import json
import os

import numpy as np

from keras_mixer import files

from .common import OUTPUT_KINDS

DTYPES = ("float32", "uint8", "int8")
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# "quantize" of files made by LiteRT Quantizer (`export.quantizer`): its recipe names.
LITERT_RECIPES = ("dynamic_wi8_afp32", "static_wi8_ai8", "static_wi8_ai16")


def sidecar_path(model_path):
    """`out/mixer.tflite` -> `out/mixer.json`; `out/mixer.onnx` -> `out/mixer.onnx.json`
    (and `.xml` -> `.xml.json`)."""
    model_path = os.fspath(model_path)
    if model_path.endswith(".tflite"):
        return model_path[:-len(".tflite")] + ".json"
    return model_path + ".json"


def io_contract(tflite):
    """(input, output) dicts of the schema, read back from a converted model
    (its bytes or its path)."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(tflite, (bytes, bytearray)):
        interp = Interpreter(model_content=bytes(tflite))
    else:
        interp = Interpreter(model_path=tflite)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    return _tensor(inp), _tensor(out)


def _tensor(detail):
    scale, zero_point = detail["quantization"]
    quant = None
    if scale:  # (0.0, 0) marks a float tensor
        quant = {"scale": float(scale), "zero_point": int(zero_point)}
    return {
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": quant,
    }


def write_sidecar(tflite_path, tflite, *, model_name, labels, quantize, target, kind,
                  transform, overwrite=False):
    """Writes `<model>.json` for the model bytes `tflite` that will be written
    to `tflite_path`; returns (sidecar path, contract)."""
    inp, out = io_contract(tflite)
    return write_contract(tflite_path, inp, out, file_format="tflite", model_name=model_name,
                          labels=labels, kind=kind, transform=transform, overwrite=overwrite,
                          model_file=bytes(tflite), quantize=quantize, target=target)


def write_contract(model_path, inp, out, *, file_format, model_name, labels, kind, transform,
                   model_file, overwrite=False, **fields):
    """Writes the sidecar of any exported file; returns (sidecar path, contract).

    inp, out: {"shape", "dtype", "quantization"} (plus "name" for the server
    formats) as read back from the converted file in its own runtime.
    transform: the model's `EvalTransform`, written as "preprocessing".
    model_file: the bytes, or the path of a draft, of what will be written to
        `model_path` (its SHA-256 and size go into the sidecar).
    fields: the format's own keys (tflite: quantize, target; servers: precision).
    """
    path = sidecar_path(model_path)
    files.check_output(path, overwrite=overwrite)
    if len(labels) != out["shape"][-1]:
        raise ValueError(
            f"labels: the model has {out['shape'][-1]} classes; got {len(labels)} labels"
        )
    contract = {
        "format": FORMATS[file_format],
        "input": {**inp, "color": "RGB", "range": [0, 255]},
        "output": {**out, "kind": kind},
        "labels": [str(label) for label in labels],
        "model": model_name,
        **fields,
        **file_digest(model_file),
        "preprocessing": transform.to_json(),
    }
    files.write_bytes(path, json.dumps(contract, indent=1).encode("utf-8"))
    return path, contract


def file_digest(data):
    """{"model_sha256", "model_bytes"} of bytes or of the file at a path."""
    if not isinstance(data, (bytes, bytearray)):
        with open(data, "rb") as f:
            data = f.read()
    return {"model_sha256": hashlib.sha256(data).hexdigest(), "model_bytes": len(data)}


def contract_transform(contract):
    """The `EvalTransform` a sidecar states (the paper's if it predates the field)."""
    from keras_mixer.preprocessing import EvalTransform

    spec = contract.get("preprocessing", {})
    if not isinstance(spec, dict):
        raise ValueError(f"preprocessing: expected an object; got {spec!r}")
    extra = sorted(set(spec) - {"crop_fraction", "interpolation"})
    if extra:
        raise ValueError(f"preprocessing: expected crop_fraction and interpolation; got {extra}")
    try:
        return EvalTransform(tuple(contract["input"]["shape"][1:3]), **spec)
    except ValueError as err:  # "crop_fraction: ..." -> "preprocessing.crop_fraction: ..."
        raise ValueError(f"preprocessing.{err}") from err


def read_contract(path):
    """Reads and checks the sidecar of a model (`path`: the .tflite or the .json).

    Raises ValueError naming the first field that breaks the schema.
    A sidecar that is not a JSON object, lacks a field or states another
    model file (its "model_sha256"/"model_bytes") raises ValueError naming it.
    """
    path = os.fspath(path)
    json_path = path if path.endswith(".json") else sidecar_path(path)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"path: no sidecar metadata at {json_path!r}")
    try:
        with open(json_path, encoding="utf-8") as f:
            contract = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"path: expected JSON in the sidecar {json_path!r}; got {err}") from err
    if not isinstance(contract, dict):
        raise ValueError(f"path: expected a JSON object in the sidecar {json_path!r}; got a "
                         f"{type(contract).__name__}")
    try:
        _check_contract(contract)
    except ValueError as err:
        raise ValueError(f"{err} (in {json_path!r})") from err
    model_path = path if not path.endswith(".json") else _model_path(json_path, contract)
    _check_pair(model_path, json_path, contract)
    return contract


def _model_path(json_path, contract):
    """The model file a sidecar path belongs to (see `sidecar_path`)."""
    stem = json_path[:-len(".json")]
    return stem + ".tflite" if contract["format"] == FORMAT else stem


def _check_pair(model_path, json_path, contract):
    """Refuses a model file that is not the one the sidecar was written for."""
    if "model_sha256" not in contract or not os.path.isfile(model_path):
        return
    got = file_digest(model_path)
    if got != {k: contract[k] for k in got}:
        raise ValueError(
            f"path: the model {model_path!r} ({got['model_bytes']} bytes, sha256 "
            f"{got['model_sha256'][:12]}...) is not the one its sidecar {json_path!r} describes "
            f"({contract['model_bytes']} bytes, sha256 {contract['model_sha256'][:12]}...); "
            f"an export was interrupted between the two renames: export again")


def _check_contract(c):
    def need(ok, field, value, allowed):
        if not ok:
            raise ValueError(f"metadata {field}: expected {allowed}; got {value!r}")

    for field in ("input", "output"):
        need(isinstance(c.get(field), dict), field, c.get(field, "nothing (missing)"),
             "an object")

    # A wrong tflite version gets the message the Android app gives, too.
    formats = list(FORMATS.values())
    tflite_like = str(c.get("format")).startswith("keras-mixer-tflite")
    need(c.get("format") in formats, "format", c.get("format"),
         repr(FORMAT) if tflite_like else formats)
    tflite = c["format"] == FORMAT
    batch, batch_text = (1, "1") if tflite else (None, "null")
    inp, out = c.get("input", {}), c.get("output", {})
    shape = inp.get("shape")
    need(isinstance(shape, list) and len(shape) == 4 and shape[0] == batch and shape[3] == 3,
         "input.shape", shape, f"[{batch_text}, H, W, 3]")
    need(inp.get("color") == "RGB", "input.color", inp.get("color"), "'RGB'")
    need(inp.get("range") == [0, 255], "input.range", inp.get("range"), "[0, 255]")
    need(out.get("kind") in OUTPUT_KINDS, "output.kind", out.get("kind"), OUTPUT_KINDS)
    labels = c.get("labels")
    need(isinstance(out.get("shape"), list) and len(out["shape"]) == 2
         and isinstance(labels, list) and out["shape"] == [batch, len(labels)],
         "output.shape", out.get("shape"), f"[{batch_text}, len(labels)]")
    for name, tensor in (("input", inp), ("output", out)):
        need(tensor.get("dtype") in DTYPES, f"{name}.dtype", tensor.get("dtype"), DTYPES)
        quant = tensor.get("quantization")
        float_io = tensor["dtype"] == "float32"
        need((quant is None) == float_io and (float_io or isinstance(quant, dict) and (
            isinstance(quant.get("scale"), float) and isinstance(quant.get("zero_point"), int))),
            f"{name}.quantization", quant,
            "null for float32, else {'scale': float, 'zero_point': int}")
        if not tflite:
            need(isinstance(tensor.get("name"), str) and tensor["name"], f"{name}.name",
                 tensor.get("name"), "the tensor's name in the runtime")
    need(isinstance(c.get("model"), str), "model", c.get("model"), "a string")
    if "model_sha256" in c:
        need(isinstance(c["model_sha256"], str) and len(c["model_sha256"]) == 64,
             "model_sha256", c["model_sha256"], "64 hex digits")
        need(isinstance(c.get("model_bytes"), int), "model_bytes", c.get("model_bytes"),
             "an int")
    if "preprocessing" in c:
        try:
            contract_transform(c)
        except ValueError as err:
            raise ValueError(f"metadata {err}") from err
    if tflite:
        modes = QUANTIZE_MODES + LITERT_RECIPES
        need(c.get("quantize") in modes, "quantize", c.get("quantize"), modes)
        from .targets import TARGETS

        need(c.get("target") in TARGETS, "target", c.get("target"), TARGETS)
