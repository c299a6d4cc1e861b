"""Layer-wise learning-rate decay for fine-tuning (as in BEiT and timm's `layer_decay`).

The head and final norm learn at the full rate, block i of L at
`decay ** (L - i)`, the stem at `decay ** (L + 1)`: the layers nearest the input,
which pre-training shaped most generally, move least.

    optimizer = with_layer_decay(keras.optimizers.SGD(0.03, momentum=0.9), model, decay=0.75)
"""

import keras


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


def with_layer_decay(optimizer, model, *, decay):
    """`optimizer`, with each variable's learning rate scaled by
    `decay ** (L + 1 - depth)` (see `layer_depths`). decay=1 changes nothing."""
    if not (isinstance(decay, (int, float)) and 0 < decay <= 1):
        raise ValueError(f"layer_decay: expected a number in (0, 1]; got {decay!r}")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"optimizer: expected a keras.optimizers.Optimizer; got {optimizer!r}")
    if hasattr(optimizer, "layer_decay"):
        # A second application would compound the scales (decay ** 2 per layer).
        raise ValueError(f"optimizer: expected one without layer decay; got {type(optimizer).__name__} "
                         f"already decayed by layer_decay={optimizer.layer_decay!r}")
    depths, top = layer_depths(model)
    if top == 1:
        raise ValueError(f"model: {model.name!r} has no MixerBlock layers; expected a Mixer")
    # Keyed as the optimizer keys its own slots: update_step sees backend variables.
    scales = {optimizer._var_key(v): float(decay ** (top - depths[v.path]))
              for v in model.weights if v.path in depths}
    base = type(optimizer)

    class LayerDecay(base):
        def update_step(self, gradient, variable, learning_rate):
            scale = scales.get(self._var_key(variable), 1.0)
            return super().update_step(gradient, variable, learning_rate * scale)

    LayerDecay.__name__ = LayerDecay.__qualname__ = f"LayerDecay{base.__name__}"
    optimizer.__class__ = LayerDecay  # the same instance: its state and config stay
    optimizer.layer_decay = decay
    return optimizer
