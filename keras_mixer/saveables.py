"""Everything keras.saving needs to load a keras-mixer model: the Mixer layers
and the layer-decay optimizers. Imported by the package's import hook right
after Keras (see keras_mixer/__init__.py)."""

from keras_mixer import layers, optimizers  # noqa: F401  (registration on import)
