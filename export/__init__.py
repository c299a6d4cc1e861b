"""The deployment path of keras-mixer: TFLite (float32, float16, dynamic-range
and full-integer int8), TFLite target checks (cpu, gpu, nnapi, edgetpu),
sidecar metadata for apps, verification against the Keras model with the
standalone LiteRT interpreter, and SavedModels for servers (optionally XLA).

This package imports `keras_mixer`, never the other way round.

    from export import export_tflite, verify_tflite, export_saved_model
"""

from export.metadata import read_contract
from export.saved_model import export_saved_model
from export.tflite import export_tflite
from export.verify import verify_tflite
