"""keras-mixer: MLP-Mixer (Tolstikhin et al., 2021) for Keras 3."""

from keras_mixer.labels import decode_predictions
from keras_mixer.layers import MixerBlock, MlpBlock
from keras_mixer.model import (
    VARIANTS,
    Mixer,
    MixerB16,
    MixerB32,
    MixerH14,
    MixerL16,
    MixerL32,
    MixerS8,
    MixerS16,
    MixerS32,
)
from keras_mixer.preprocessing import preprocess_input

__version__ = "0.1.0"
