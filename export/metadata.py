"""The contract a phone app reads: labels, input and output of a .tflite file.

Written as a sidecar JSON next to the model, `<model>.json`: for
`out/mixer.tflite` the sidecar is `out/mixer.json` (see `sidecar_path`).
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
     "quantize": "none|float16|dynamic|int8", "target": "cpu|gpu|nnapi|edgetpu"}

- "range" is the range of the pixel values the app feeds, before any
  quantization: the model rescales 0-255 to [-1, 1] itself. With a quantized
  input (uint8/int8) the app writes round(pixel / scale + zero_point).
- "quantization" holds the parameters read back from the converted file's
  input/output details, null for float tensors.
- An output of "kind" "probabilities" sums to 1 (after dequantizing).
"""

FORMAT = "keras-mixer-tflite/1"
