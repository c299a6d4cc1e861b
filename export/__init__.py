"""keras_mixer.export: the deployment path of keras-mixer.

TFLite/LiteRT (float32, float16, dynamic-range and full-integer int8, one
XNNPACK partition) with target checks (cpu, gpu, nnapi, edgetpu) and a
sidecar contract for apps; LiteRT Quantizer recipes (dynamic, w8a8, w8a16)
on a float .tflite as a second path;
for servers, SavedModels (optionally XLA, optionally bfloat16), ONNX and
OpenVINO IR; each file verified against its Keras model in its own runtime
(LiteRT, ONNX Runtime, OpenVINO). For PyTorch users, timm repositories
(config.json + model.safetensors: `export_timm`, checked against real timm by
the `-m timm` tests, not at export time); for keras-hub users, presets
(`export_keras_hub`, loaded back by keras-hub before the rename). It imports
the model core, never training.

    from keras_mixer.export import export_tflite, export_onnx, export_openvino, verify

The folder is `export/` in the source tree; setuptools installs it as
`keras_mixer.export`, the only name it is importable under.
"""

if __name__ != "keras_mixer.export":
    raise ImportError(
        f"this package is keras_mixer.export; import it under that name, not {__name__!r}")

from .hub import export_keras_hub  # noqa: E402
from .metadata import read_contract  # noqa: E402
from .quantizer import quantize_tflite  # noqa: E402
from .saved_model import export_saved_model  # noqa: E402
from .servers import export_onnx, export_openvino  # noqa: E402
from .tflite import export_tflite  # noqa: E402
from .timm_format import export_timm  # noqa: E402
from .verify import verify, verify_tflite  # noqa: E402
