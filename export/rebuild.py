"""An export copy of a Mixer: the same function, in ops a target runs well.

GELU as x * sigmoid(2z) (the tanh approximation, made of LOGISTIC and MUL)
where a target lacks GELU, LayerNorm in ops every TFLite target quantizes,
and (`with_precision`) bfloat16 compute for servers.
"""

import contextlib

import keras

from keras_mixer.precision import Precision

from .common import PRECISIONS
from .targets import SIGMOID_GELU_TARGETS, check_target


def rebuild_for_target(model, target, quantize="none"):
    """An export copy of `model`: the same function, in ops `target` runs well.

    Cloned from the model's config with the weights copied.
    - GELU becomes x * sigmoid(2z) (`gelu_form="sigmoid"`) where `target` lacks
      GELU, and for int8 on every target: XNNPACK has no int8 GELU, so the
      tanh form would leave each GELU to a slower non-delegated kernel.
    - Every LayerNorm computes d = x - mean, var = mean(d * d),
      d * (gamma / sqrt(var + eps)) + beta, the same function as Keras'
      x * inv + (-mean * inv + beta). Keras' form converts to NEG (no int8
      kernel) and SQUARED_DIFFERENCE (no int8 XNNPACK kernel), which fall
      out of XNNPACK in a full-int8 graph and split it.
      For int8 the variance is a FULLY_CONNECTED with eps as its bias
      (`_Int8LayerNorm`), which keeps the graph in one XNNPACK partition.
    """
    check_target(target)
    config = model.get_config()
    if target in SIGMOID_GELU_TARGETS or quantize == "int8":
        _each_dict(config, lambda node: "gelu_form" in node and node.update(gelu_form="sigmoid"))
    clone = _clone(model, config)
    norm = _Int8LayerNorm if quantize == "int8" else _CentredLayerNorm
    for layer in clone._flatten_layers():
        if type(layer) is keras.layers.LayerNormalization and not layer.rms_scaling:
            layer.__class__ = norm
    return clone


class _CentredLayerNorm(keras.layers.LayerNormalization):
    """LayerNormalization over the last axis, written with ops every TFLite
    target quantizes: SUB, MUL, MEAN, RSQRT, ADD.

    Only swapped onto layers of an export copy (never saved or registered).
    """

    def call(self, inputs):
        from keras import ops

        x = ops.cast(inputs, "float32")
        centred = x - ops.mean(x, axis=self.axis, keepdims=True)
        inv = ops.rsqrt(self._variance_plus_epsilon(centred))
        if self.scale:
            inv = inv * self.gamma
        outputs = centred * inv
        if self.center:
            outputs = outputs + self.beta
        return ops.cast(outputs, self.compute_dtype)

    def _variance_plus_epsilon(self, centred):
        from keras import ops

        return ops.mean(centred * centred, axis=self.axis, keepdims=True) + self.epsilon


class _Int8LayerNorm(_CentredLayerNorm):
    """The same LayerNorm with var + eps as one FULLY_CONNECTED: mean over the
    channels as a (C, 1) matmul of 1/C, eps as its bias.

    As a separate int8 ADD, eps (1e-6) has a scale ~1e6 times finer than the
    variance's, outside the scale ratios XNNPACK's int8 ADD accepts, so that
    ADD left the delegate: one partition break per LayerNorm. Inside the
    FULLY_CONNECTED the bias is int32 at the accumulator's scale, which XNNPACK
    takes. With RSQRT (no int8 XNNPACK kernel) kept in float, a full-int8
    Mixer is one XNNPACK partition.
    """

    def _variance_plus_epsilon(self, centred):
        from keras import ops

        channels = centred.shape[-1]
        mean_weights = ops.full((channels, 1), 1.0 / channels, dtype=centred.dtype)
        return ops.matmul(centred * centred, mean_weights) + self.epsilon


def with_precision(model, precision):
    """The model itself for "float32"; for "bfloat16" an export copy under Keras'
    mixed_bfloat16 policy: float32 weights, bfloat16 matmuls and activations,
    LayerNorm statistics in float32 (Keras' LayerNormalization upcasts) and the
    last layer (the head and its softmax) kept in float32, so the outputs are
    float32 probabilities or logits.

    bfloat16 pays where the hardware multiplies it natively: CPUs with
    AVX512_BF16 or AMX, recent GPUs, TPUs (docs/performance).
    """
    precision = Precision.parse(precision, allowed=map(Precision, PRECISIONS))
    if precision is Precision.FLOAT32:
        return model
    config = model.get_config()
    mixed = keras.dtype_policies.serialize(keras.DTypePolicy(precision.keras_policy))
    last = model.layers[-1].name

    def lower(node):
        # Layer configs carry a DTypePolicy dict; InputLayer's plain "float32"
        # string stays, so the model still takes float32 images.
        if isinstance(node.get("dtype"), dict) and node.get("name") != last:
            node["dtype"] = mixed

    _each_dict(config, lower)
    # Sub-layers made in a block's __init__ (LayerNorm, Dense) take the global
    # policy, not the block's: set it while the copy is built.
    with _global_policy(precision.keras_policy):
        return _clone(model, config)


def _clone(model, config):
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


@contextlib.contextmanager
def _global_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _each_dict(node, fn):
    """Calls fn on every dict of a (possibly nested) functional model config."""
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _each_dict(value, fn)
    elif isinstance(node, list):
        for value in node:
            _each_dict(value, fn)
