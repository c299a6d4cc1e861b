"""The two layers of MLP-Mixer, named after the authors' checkpoint.

`MlpBlock` is Dense -> GELU -> Dense (`MlpBlock` in the authors' code) and
`MixerBlock` is one token-mixing plus one channel-mixing step with pre-norm
residuals. Both use `keras.ops` only, so they run on every Keras backend.
"""

import keras
from keras import ops

# Flax's nn.LayerNorm default; Keras' own default (1e-3) changes the logits.
LAYER_NORM_EPSILON = 1e-6
# `tanh`: the tanh approximation of GELU, which the authors' checkpoints use
# (Flax's default nn.gelu).
# `sigmoid`: the same function written as x * sigmoid(2z) (0.5 * (1 + tanh(z))
# == sigmoid(2z)), made of ops the TFLite GPU delegate and Edge TPU support.
# `erf`: exact GELU (PyTorch's nn.GELU), which checkpoints trained in PyTorch
# (Alibaba MIIL's, through timm) need; it differs from tanh by up to 4.7e-4.
GELU_FORMS = ("tanh", "sigmoid", "erf")
_SQRT_2_OVER_PI = 0.7978845608028654


def gelu(x, form="tanh"):
    """GELU: exact ("erf"), or the tanh approximation in one of two
    algebraically equal forms ("tanh", "sigmoid")."""
    if form == "tanh":
        return ops.gelu(x, approximate=True)
    if form == "erf":
        return ops.gelu(x, approximate=False)
    z = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
    return x * ops.sigmoid(2.0 * z)


@keras.saving.register_keras_serializable(package="keras_mixer")
class MlpBlock(keras.layers.Layer):
    """Dense(hidden_units) -> GELU -> Dense(output_units) over the last axis."""

    def __init__(self, hidden_units, output_units, gelu_form="tanh", **kwargs):
        super().__init__(**kwargs)
        if gelu_form not in GELU_FORMS:
            raise ValueError(
                f"gelu_form: expected one of {GELU_FORMS}; got {gelu_form!r}"
            )
        self.hidden_units = hidden_units
        self.output_units = output_units
        self.gelu_form = gelu_form
        dense = dict(kernel_initializer="lecun_normal", bias_initializer="zeros")
        self.dense_0 = keras.layers.Dense(hidden_units, name="Dense_0", **dense)
        self.dense_1 = keras.layers.Dense(output_units, name="Dense_1", **dense)

    def build(self, input_shape):
        self.dense_0.build(input_shape)
        self.dense_1.build(tuple(input_shape[:-1]) + (self.hidden_units,))

    def call(self, x):
        return self.dense_1(gelu(self.dense_0(x), self.gelu_form))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_units,)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "output_units": self.output_units,
            "gelu_form": self.gelu_form,
        }


@keras.saving.register_keras_serializable(package="keras_mixer")
class MixerBlock(keras.layers.Layer):
    """One Mixer layer on tokens of shape (batch, num_tokens, hidden_dim).

    x = x + token_mixing(LayerNorm_0(x) transposed) transposed back
    x = x + channel_mixing(LayerNorm_1(x))

    `drop_path_rate` drops each residual branch per sample while training
    (stochastic depth); at inference the block is exactly the paper's.
    """

    def __init__(
        self,
        num_tokens,
        hidden_dim,
        tokens_mlp_dim,
        channels_mlp_dim,
        drop_path_rate=0.0,
        gelu_form="tanh",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f"drop_path_rate: expected a number in [0, 1); got {drop_path_rate!r}"
            )
        self.num_tokens = num_tokens
        self.hidden_dim = hidden_dim
        self.tokens_mlp_dim = tokens_mlp_dim
        self.channels_mlp_dim = channels_mlp_dim
        self.drop_path_rate = drop_path_rate
        self.gelu_form = gelu_form
        self.seed = seed
        norm = dict(epsilon=LAYER_NORM_EPSILON)
        self.layer_norm_0 = keras.layers.LayerNormalization(name="LayerNorm_0", **norm)
        self.token_mixing = MlpBlock(
            tokens_mlp_dim, num_tokens, gelu_form, name="token_mixing"
        )
        self.layer_norm_1 = keras.layers.LayerNormalization(name="LayerNorm_1", **norm)
        self.channel_mixing = MlpBlock(
            channels_mlp_dim, hidden_dim, gelu_form, name="channel_mixing"
        )
        if drop_path_rate > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        batch = input_shape[0]
        self.layer_norm_0.build(input_shape)
        self.token_mixing.build((batch, self.hidden_dim, self.num_tokens))
        self.layer_norm_1.build(input_shape)
        self.channel_mixing.build(input_shape)

    def call(self, x, training=False):
        y = ops.transpose(self.layer_norm_0(x), (0, 2, 1))
        y = ops.transpose(self.token_mixing(y), (0, 2, 1))
        x = x + self._drop_path(y, training)
        y = self.channel_mixing(self.layer_norm_1(x))
        return x + self._drop_path(y, training)

    def _drop_path(self, y, training):
        if not training or self.drop_path_rate == 0:
            return y
        keep = 1.0 - self.drop_path_rate
        shape = (ops.shape(y)[0], 1, 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=y.dtype)
        return y * ops.floor(keep + noise) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_tokens": self.num_tokens,
            "hidden_dim": self.hidden_dim,
            "tokens_mlp_dim": self.tokens_mlp_dim,
            "channels_mlp_dim": self.channels_mlp_dim,
            "drop_path_rate": self.drop_path_rate,
            "gelu_form": self.gelu_form,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_mixer")
class InputRescaling(keras.layers.Rescaling):
    """The checkpoint's input normalization of RGB 0-255 pixels (`scale * x +
    offset`, per channel or scalar), carrying its evaluation transform along
    with the model: `crop_fraction` and `interpolation` of the resize and
    centre crop (`keras_mixer.preprocessing.eval_resize_crop`), which the
    computation here does not use."""

    def __init__(self, scale=1 / 127.5, offset=-1.0, crop_fraction=0.875,
                 interpolation="bicubic", **kwargs):
        super().__init__(scale=scale, offset=offset, **kwargs)
        self.crop_fraction = crop_fraction
        self.interpolation = interpolation

    def get_config(self):
        return {**super().get_config(), "crop_fraction": self.crop_fraction,
                "interpolation": self.interpolation}
