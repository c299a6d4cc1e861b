"""Layer-wise learning-rate decay for fine-tuning (as in BEiT and timm's `layer_decay`).

    from keras_mixer.training.layer_decay import with_layer_decay
    optimizer = with_layer_decay(keras.optimizers.SGD(0.03, momentum=0.9), model, decay=0.75)

Defined in `keras_mixer.optimizers` (the model core), so a model compiled with a
decayed optimizer reloads without importing the training package.
"""

from keras_mixer.optimizers import decayed_class, layer_depths, with_layer_decay

__all__ = ["decayed_class", "layer_depths", "with_layer_decay"]
