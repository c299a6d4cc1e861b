"""keras-mixer: MLP-Mixer (Tolstikhin et al., 2021) for Keras 3.

    import keras_mixer
    model = keras_mixer.MixerB16(weights="imagenet")
    keras_mixer.decode_predictions(model.predict(images), top=5)

Names are imported on first use, so `import keras_mixer` (and `keras-mixer
--help`) does not start Keras. Saved `.keras` models need the Mixer layers
(and a compiled model its layer-decay optimizer) registered with Keras:
importing keras_mixer does that whichever of the two is imported first
(`_lazy.register_after`: at once if Keras is loaded, else right after
`import keras` completes).
"""

from keras_mixer import _lazy

__version__ = "0.2.0"

_EXPORTS = {
    **{name: ".model" for name in (
        "VARIANTS", "Mixer", "MixerS32", "MixerS16", "MixerS8", "MixerB32", "MixerB16",
        "MixerL32", "MixerL16", "MixerH14", "feature_extractor")},
    "MixerBlock": ".layers",
    "MlpBlock": ".layers",
    "decode_predictions": ".labels",
    "preprocess_input": ".preprocessing",
    "load_image": ".preprocessing",
    "EvalTransform": ".preprocessing",
    "load_model": ".inference",
    "plot_token_mixing": ".visualize",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)

# keras.saving.load_model finds the Mixer layers (and the layer-decay
# optimizers of a compiled model) only once they are registered.
_lazy.register_after("keras", "keras_mixer.saveables")
# keras-hub's from_preset finds the Mixer's keras-hub classes (keras_mixer.hub)
# once keras_hub is imported too, in either order; keras-hub stays optional.
_lazy.register_after("keras_hub", "keras_mixer.hub")
