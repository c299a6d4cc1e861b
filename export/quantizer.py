"""LiteRT Quantizer (`litert-quantizer`): the second quantization path.

    report = quantize_tflite("out/m_fp32.tflite", "out/m_w8a16.tflite",
                             recipe="w8a16", representative=images)

It starts from a float .tflite (`export_tflite(..., quantize="none")`) and
applies one of the package's own recipes:
  dynamic  dynamic_wi8_afp32: int8 weights, activations float (quantized on
           the fly by the kernels): CPU and GPU
  w8a8     static_wi8_ai8: int8 weights and activations, calibrated: CPU, NPUs
  w8a16    static_wi8_ai16: int8 weights, int16 activations, calibrated: NPUs
           that take int16 activations (more accurate than w8a8)
`float_ops` keeps the named TFLite ops unquantized (the recipe's regex-scoped
"no_quantize" entries), the selective float region of the first path.
The report carries the quantizer's own per-tensor errors against the float
file (SNR in dB, cosine similarity) on held-out images, the worst layers, the
output's, and the file's XNNPACK partitions. Input and output stay float32
(and a final softmax float), as in export_tflite's int8; the sidecar is the
float file's with "quantize" naming the recipe (static_wi8_ai16, ...).
"""

import os

import numpy as np

from keras_mixer import files

from . import common, metadata, targets
from .data import check_source
from .runtimes import LiteModel
from .tflite import DEFAULT_SAMPLES, representative_images

# Our short names -> the package's recipe functions (also the sidecar's "quantize").
RECIPES = dict(zip(("dynamic", "w8a8", "w8a16"), metadata.LITERT_RECIPES))
WORST_LAYERS = 5


def quantize_tflite(float_tflite, output, *, recipe="w8a8", representative="default",
                    num_samples=DEFAULT_SAMPLES, held_out=None, float_ops=(), data_dir=None,
                    overwrite=False):
    """Quantizes a float .tflite with LiteRT Quantizer; writes `output` and its sidecar.

    representative: calibration images for the static recipes, as for
        `export_tflite`: a source of `export.data` or an (N, H, W, 3) array.
    held_out: (N, H, W, 3) images for the per-layer error report (default:
        the first 8 calibration images; 4 seeded random ones for "dynamic").
    Returns {"path", "bytes", "recipe", "xnnpack", "ops", "output_error",
    "worst_layers": [{"tensor", "snr_db", "cosine"}, ...]}.
    """
    from litert_quantizer import quantizer, recipe as recipes
    from litert_quantizer.utils import validation_utils

    if recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {list(RECIPES)}; got {recipe!r}")
    output = common.check_file_output(output, overwrite=overwrite, suffix=".tflite")
    files.check_output(metadata.sidecar_path(output), overwrite=overwrite)
    float_ops = _check_float_ops(float_ops)
    float_tflite = common.fspath(float_tflite)
    representative = common.fspath_source(representative)
    if not (isinstance(float_tflite, str) and os.path.isfile(float_tflite)):
        raise FileNotFoundError(f"float_tflite: no such file: {float_tflite!r}")
    source = LiteModel(float_tflite)
    contract = metadata.read_contract(float_tflite)
    if contract["quantize"] != "none":
        raise ValueError(f"float_tflite: expected a float .tflite (quantize 'none'); got "
                         f"{float_tflite!r} with quantize {contract['quantize']!r}")
    if isinstance(representative, str):
        check_source(representative, data_dir=data_dir)
    held_out = _images(held_out, source.image_size)
    transform = metadata.contract_transform(contract)
    if recipe != "dynamic":
        representative = representative_images(representative, transform,
                                               num_samples=num_samples, data_dir=data_dir)
    if held_out is None:
        held_out = representative[:8] if recipe != "dynamic" else np.random.default_rng(
            0).uniform(0, 255, (4, *source.image_size, 3)).astype(np.float32)
    with open(float_tflite, "rb") as f:
        model = f.read()
    # Float input and output, as export_tflite's int8 (the sidecar schema has
    # no int16, and apps feed RGB 0-255); a softmax stays float as there.
    keep = ("INPUT", "OUTPUT", *float_ops)
    if contract["output"]["kind"] == "probabilities":
        keep += ("SOFTMAX",)
    rules = getattr(recipes, RECIPES[recipe])() + [
        {"regex": ".*", "operation": op, "algorithm_key": "no_quantize"}
        for op in dict.fromkeys(keep)]
    q = quantizer.Quantizer(model, rules)
    signature, name = _signature(model)
    calibration = None
    if q.need_calibration:
        calibration = q.calibrate({signature: [{name: x[None]} for x in representative]})
    result = q.quantize(calibration, enable_progress_report=False)
    metrics = [validation_utils.ValidationErrorMetric.SNR,
               validation_utils.ValidationErrorMetric.COSINE_SIMILARITY]
    errors = q.validate({signature: [{name: x[None]} for x in held_out]}, metrics)
    errors = errors.get_signature_comparison_result(signature)
    data = bytes(result.quantized_model)
    metadata.write_sidecar(output, data, model_name=contract["model"], labels=contract["labels"],
                           quantize=RECIPES[recipe], target=contract["target"],
                           kind=contract["output"]["kind"], transform=transform,
                           overwrite=overwrite)
    files.write_bytes(output, data)
    layers = sorted(errors.intermediate_tensors.items(), key=lambda kv: kv[1]["snr"])
    return {"path": output, "bytes": len(data), "recipe": recipe, "float_ops": list(float_ops),
            "xnnpack": targets.xnnpack_partitions(data),
            "ops": targets.op_counts(targets.model_ops(data)),
            "output_error": _metric(next(iter(errors.output_tensors.values()))),
            "worst_layers": [{"tensor": k, **_metric(v)} for k, v in layers[:WORST_LAYERS]]}


def _metric(values):
    # The quantizer's SNR is the power ratio mean(x^2) / mean((q - x)^2).
    return {"snr_db": round(10 * float(np.log10(max(values["snr"], 1e-12))), 2),
            "cosine": float(values["cosine_similarity"])}


def _signature(model):
    """(signature key, input name) of a keras-mixer .tflite (one input)."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=model).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def _images(images, size):
    if images is None:
        return None
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != (*size, 3) or not len(images):
        raise ValueError(f"held_out: expected images of shape (N, {size[0]}, {size[1]}, 3); "
                         f"got {images.shape}")
    return images


def _check_float_ops(float_ops):
    from litert_quantizer.qtyping import TFLOperationName

    known = {op.value for op in TFLOperationName}
    ops = [s for s in float_ops.split(",") if s] if isinstance(float_ops, str) else list(float_ops)
    for op in ops:
        if op not in known or op == "*":
            raise ValueError(f"float_ops: expected op names LiteRT Quantizer knows (RSQRT, "
                             f"SOFTMAX, ...); got {op!r}")
    return tuple(ops)
