"""An export copy of a Mixer: the same function, in ops a target runs well.

GELU as x * sigmoid(2z) (the tanh approximation, made of LOGISTIC and MUL)
where a target lacks GELU, and LayerNorm in ops every TFLite target quantizes.
"""

import keras

from .targets import SIGMOID_GELU_TARGETS, check_target


def rebuild_for_target(model, target, quantize="none"):
    """An export copy of `model`: the same function, in ops `target` runs well.

    Cloned from the model's config with the weights copied.
    - GELU becomes x * sigmoid(2z) (`gelu_form="sigmoid"`) where `target` lacks
      GELU, and for int8 on every target: XNNPACK has no int8 GELU, so the
      tanh form would leave each GELU to a slower non-delegated kernel
      (S/16 int8: 14.2 -> 12.7 ms, benchmarks/export_tflite.py).
    - Every LayerNorm computes d = x - mean, var = mean(d * d),
      d * (gamma / sqrt(var + eps)) + beta, the same function as Keras'
      x * inv + (-mean * inv + beta). Keras' form converts to NEG (no int8
      kernel) and SQUARED_DIFFERENCE (no int8 XNNPACK kernel); in a full-int8
      S/16 those fell out of XNNPACK and cost 29.2 ms against 14.2 ms.
    """
    check_target(target)
    config = model.get_config()
    if target in SIGMOID_GELU_TARGETS or quantize == "int8":
        _set_gelu_form(config, "sigmoid")
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    for layer in clone._flatten_layers():
        if type(layer) is keras.layers.LayerNormalization and not layer.rms_scaling:
            layer.__class__ = _CentredLayerNorm
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
        variance = ops.mean(centred * centred, axis=self.axis, keepdims=True)
        inv = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * self.gamma
        outputs = centred * inv
        if self.center:
            outputs = outputs + self.beta
        return ops.cast(outputs, self.compute_dtype)


def _set_gelu_form(node, form):
    # Walks a (possibly nested) functional config; MixerBlock and MlpBlock
    # configs are the dicts that carry "gelu_form".
    if isinstance(node, dict):
        if "gelu_form" in node:
            node["gelu_form"] = form
        for value in node.values():
            _set_gelu_form(value, form)
    elif isinstance(node, list):
        for value in node:
            _set_gelu_form(value, form)
