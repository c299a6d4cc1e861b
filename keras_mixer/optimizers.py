"""Layer-wise learning-rate decay for fine-tuning (as in BEiT and timm's `layer_decay`).

The head and final norm learn at the full rate, block i of L at
`decay ** (L - i)`, the stem at `decay ** (L + 1)`: the layers nearest the input,
which pre-training shaped most generally, move least.

    optimizer = with_layer_decay(keras.optimizers.SGD(0.03, momentum=0.9), model, decay=0.75)

A decayed optimizer is `LayerDecay<Base>`, a subclass of its own class whose
config carries `layer_decay` and each variable's scale by variable path, so a
model compiled with it saves and reloads (`keras.saving.load_model`) with the
scales and the optimizer state. The subclasses of Keras' built-in optimizers
are registered when Keras and keras_mixer are both imported (the package's
import hook); for an optimizer class of your own, call `decayed_class(YourClass)`
before loading a model compiled with its decayed form.

This lives in the model core, not in `keras_mixer.training`, because loading a
saved model must not import the training package;
`keras_mixer.training.layer_decay` is its documented import path.
"""

import inspect

import keras

# Keras' optimizers that wrap another (their update step is the inner one's).
_WRAPPERS = ("LossScaleOptimizer", "MultiOptimizer")
_CLASSES = {}


def layer_depths(model):
    """{variable path: depth} with stem 0, MixerBlock_i i + 1, the rest L + 1."""
    blocks = [l for l in model._flatten_layers() if l.name.startswith("MixerBlock_")]
    top = len(blocks) + 1
    depths = {}
    for layer in model._flatten_layers(include_self=False, recursive=False):
        if layer.name == "stem":
            depth = 0
        elif layer.name.startswith("MixerBlock_"):
            depth = int(layer.name.split("_")[1]) + 1
        else:
            depth = top
        for variable in layer.weights:
            depths[variable.path] = depth
    return depths, top


def decayed_class(base):
    """`LayerDecay<base>`: `base` whose update step scales each variable's rate
    by its `layer_scales` entry (by variable path; 1 for a variable not listed),
    registered with Keras as `keras_mixer>LayerDecay<base>` so saved models
    that use it reload."""
    if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
        raise ValueError(f"base: expected a keras.optimizers.Optimizer subclass; got {base!r}")
    if base.__name__ in _WRAPPERS or getattr(base, "_keras_mixer_decayed", False):
        raise ValueError(f"base: expected an optimizer with its own update step; got "
                         f"{base.__name__} (apply layer decay to the optimizer it wraps)")
    if base in _CLASSES:
        return _CLASSES[base]

    class LayerDecay(base):
        _keras_mixer_decayed = True

        def __init__(self, *args, layer_decay=1.0, layer_scales=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.layer_decay = layer_decay
            self.layer_scales = dict(layer_scales or {})
            self._decay_by_key = {}

        def build(self, variables):
            super().build(variables)
            self._key_scales(variables)

        def _key_scales(self, variables):
            # Keyed as the optimizer keys its own slots: update_step may see
            # backend variables, which have no path.
            self._decay_by_key = {self._var_key(v): self.layer_scales.get(v.path, 1.0)
                                  for v in variables}

        def update_step(self, gradient, variable, learning_rate):
            scale = self._decay_by_key.get(self._var_key(variable), 1.0)
            return super().update_step(gradient, variable, learning_rate * scale)

        def get_config(self):
            config = super().get_config()
            config.update(layer_decay=self.layer_decay, layer_scales=dict(self.layer_scales))
            return config

    name = f"LayerDecay{base.__name__}"
    LayerDecay.__name__ = LayerDecay.__qualname__ = name
    # Registered under our package: a same-named registration is replaced.
    keras.saving.get_custom_objects().pop(f"keras_mixer>{name}", None)
    keras.saving.register_keras_serializable(package="keras_mixer", name=name)(LayerDecay)
    _CLASSES[base] = LayerDecay
    return LayerDecay


def with_layer_decay(optimizer, model, *, decay):
    """`optimizer`, with each variable's learning rate scaled by
    `decay ** (L + 1 - depth)` (see `layer_depths`). decay=1 changes nothing.
    The same instance is returned (its state and config stay), its class now
    `LayerDecay<its class>`."""
    if not (isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 < decay <= 1):
        raise ValueError(f"layer_decay: expected a number in (0, 1]; got {decay!r}")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"optimizer: expected a keras.optimizers.Optimizer; got {optimizer!r}")
    if hasattr(optimizer, "layer_decay"):
        # A second application would compound the scales (decay ** 2 per layer).
        raise ValueError(f"optimizer: expected one without layer decay; got {type(optimizer).__name__} "
                         f"already decayed by layer_decay={optimizer.layer_decay!r}")
    if type(optimizer).__name__ in _WRAPPERS:
        raise ValueError(f"optimizer: expected an optimizer with its own update step; got "
                         f"{type(optimizer).__name__} (apply layer decay to the optimizer it wraps)")
    depths, top = layer_depths(model)
    if top == 1:
        raise ValueError(f"model: {model.name!r} has no MixerBlock layers; expected a Mixer")
    cls = decayed_class(type(optimizer))
    optimizer.__class__ = cls
    optimizer.layer_decay = decay
    optimizer.layer_scales = {path: float(decay ** (top - depth)) for path, depth in depths.items()}
    optimizer._key_scales(model.weights)
    return optimizer


def _register_builtin():
    for name in dir(keras.optimizers):
        base = getattr(keras.optimizers, name)
        if inspect.isclass(base) and issubclass(base, keras.optimizers.Optimizer) \
                and base is not keras.optimizers.Optimizer and name not in _WRAPPERS:
            decayed_class(base)


_register_builtin()
