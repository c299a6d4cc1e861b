"""What each deployment target runs, and how a .tflite file measures up to it.

The op tables list TFLite builtin operators by their schema names. A target
that lacks GELU gets a graph rebuilt with `gelu_form="sigmoid"` (see
`rebuild.py`), so the file holds only ops that target supports.
Op lists are read from the flatbuffer with the schema that ships in
`ai_edge_litert`, so checking a file needs no TensorFlow.
"""

import numpy as np

TARGETS = ("cpu", "gpu", "nnapi", "edgetpu")
# Targets without a GELU kernel: GELU is absent from the GPU delegate's
# documented op list, from NNAPI and from the Edge TPU compiler's op table
# (sources below); they get GELU as x * sigmoid(2z) (LOGISTIC, MUL).
SIGMOID_GELU_TARGETS = ("gpu", "nnapi", "edgetpu")

# GPU delegate. Source: tensorflow/lite/tools/versioning/gpu_compatibility.cc
# (CheckGpuDelegateCompatibility), the check the delegate itself runs, minus
# GELU: that file accepts GELU only in recent releases, and the documented
# list (ai.google.dev/edge/litert/performance/gpu, "Supported ops") does not
# have it, so an app on an older delegate would fall back to the CPU.
GPU_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS
DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV
FLOOR_MOD FULLY_CONNECTED GATHER GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU
LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN
MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE
REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE
RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
""".split())

# NNAPI delegate. Source: tensorflow/lite/delegates/nnapi/nnapi_delegate.cc
# (NNAPIDelegateKernel::Validate; SQUARED_DIFFERENCE is lowered to SUB and
# MUL there). NNAPI has no GELU operation (Android NN API operand list).
NNAPI_OPS = frozenset("""
ABS ADD ARG_MAX ARG_MIN AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND CAST
CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV ELU
EQUAL EXP EXPAND_DIMS FILL FLOOR FULLY_CONNECTED GATHER GREATER GREATER_EQUAL
HARD_SWISH L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D
MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 POW PRELU QUANTIZE
REDUCE_ANY REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE
RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SIN SLICE SOFTMAX
SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARED_DIFFERENCE SQUEEZE
STRIDED_SLICE SUB SUM TANH TILE TOPK_V2 TRANSPOSE TRANSPOSE_CONV UNPACK
""".split())

# Edge TPU compiler. Source: coral.ai/docs/edgetpu/models-intro
# ("Supported operations"). Only int8/uint8 ops map to the TPU; float ops
# and anything else run on the host CPU.
EDGETPU_OPS = frozenset("""
ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D DEPTHWISE_CONV_2D
DEQUANTIZE EXPAND_DIMS FULLY_CONNECTED L2_NORMALIZATION LOGISTIC LSTM MAXIMUM
MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE REDUCE_MAX REDUCE_MIN
RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT
SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB
SUM TANH TRANSPOSE TRANSPOSE_CONV
""".split())

# cpu: None = every builtin op has a reference CPU kernel; only custom (Flex)
# ops would need the select-TF-ops runtime, which a phone app lacks.
SUPPORTED_OPS = {"cpu": None, "gpu": GPU_OPS, "nnapi": NNAPI_OPS, "edgetpu": EDGETPU_OPS}
_QUANTIZED = ("int8", "uint8", "int16")


def check_target(target):
    if target not in TARGETS:
        raise ValueError(f"target: expected one of {TARGETS}; got {target!r}")


def model_ops(tflite):
    """[{"op": "FULLY_CONNECTED", "dtype": "int8"}, ...] of the main subgraph,
    in execution order; dtype is that of the op's first input tensor."""
    from ai_edge_litert import schema_py_generated as schema

    data = _read(tflite)
    model = schema.Model.GetRootAsModel(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = "CUSTOM:" + code.CustomCode().decode()
        first = op.Inputs(0) if op.InputsLength() else -1
        dtype = types[graph.Tensors(first).Type()] if first >= 0 else "none"
        ops.append({"op": name, "dtype": dtype})
    return ops


def op_counts(ops):
    """{"FULLY_CONNECTED(int8)": 34, ...}: a short printable op list."""
    counts = {}
    for item in ops:
        key = f"{item['op']}({item['dtype']})"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def unsupported_ops(ops, target):
    """Sorted op names (with why) that `target` would not run on its accelerator."""
    check_target(target)
    return sorted({why for why in (_why_not(item, target) for item in ops) if why})


def residency(ops):
    """{target: {"ops": fraction of the ops its accelerator would hold, "unsupported": [...]}}
    from the op tables. Partitions are measured for XNNPACK only
    (`xnnpack_partitions`); the cpu target misses only custom ops."""
    return {target: {"ops": round(sum(_why_not(item, target) is None for item in ops)
                                  / max(len(ops), 1), 4),
                     "unsupported": unsupported_ops(ops, target)} for target in TARGETS}


def _why_not(item, target):
    """None if `target`'s accelerator runs the op, else the op name (and why)."""
    name, table = item["op"], SUPPORTED_OPS[target]
    if name.startswith("CUSTOM:"):
        return f"{name} (custom op)"
    if table is not None and name not in table:
        return name
    if target == "edgetpu" and name not in ("QUANTIZE", "DEQUANTIZE") \
            and item["dtype"] not in _QUANTIZED:
        return f"{name} ({item['dtype']}: not quantized, runs on the host CPU)"
    return None


def xnnpack_partitions(tflite, num_threads=2):
    """{"partitions": P, "whole_graph": bool} under LiteRT's default XNNPACK delegate.

    Each delegated partition appears as one DELEGATE node; `whole_graph` says
    whether a single partition reads the model input and writes its output,
    i.e. no op was left to the plain CPU kernels between them.
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=_read(tflite), num_threads=num_threads)
    interp.allocate_tensors()
    delegates = [d for d in interp._get_ops_details() if d["op_name"] == "DELEGATE"]
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    whole = len(delegates) == 1 and inputs <= set(np.asarray(delegates[0]["inputs"]).tolist()) \
        and outputs <= set(np.asarray(delegates[0]["outputs"]).tolist())
    return {"partitions": len(delegates), "whole_graph": bool(whole)}


def _read(tflite):
    if isinstance(tflite, (bytes, bytearray)):
        return bytes(tflite)
    with open(tflite, "rb") as f:
        return f.read()

