"""The model: surface options, parameter counts, serialization, fidelity."""

import math

import keras
import numpy as np
import pytest
import reference
from helpers import TINY, images, tiny_mixer

import keras_mixer
from keras_mixer import weights as weights_lib
from keras_mixer.layers import gelu

# Paper Table 1 / the authors' tests: exact counts with a 1000-class head.
PARAM_COUNTS = {
    "S/32": 19_104_624, "S/16": 18_528_264, "S/8": 20_646_504, "B/32": 60_293_428,
    "B/16": 59_880_472, "L/32": 206_939_264, "L/16": 208_196_168, "H/14": 432_350_952,
}
BUILDERS = {
    "S/32": keras_mixer.MixerS32, "S/16": keras_mixer.MixerS16, "S/8": keras_mixer.MixerS8,
    "B/32": keras_mixer.MixerB32, "B/16": keras_mixer.MixerB16, "L/32": keras_mixer.MixerL32,
    "L/16": keras_mixer.MixerL16, "H/14": keras_mixer.MixerH14,
}


@pytest.mark.parametrize("variant", list(PARAM_COUNTS))
def test_checkpoint_table_counts_match_paper(variant):
    # Counted from the key table, so even H/14 needs no allocation.
    config = keras_mixer.VARIANTS[variant]
    tokens = (224 // config["patch_size"]) ** 2
    shapes = weights_lib.checkpoint_shapes(config, tokens, 1000)
    assert sum(math.prod(s) for s in shapes.values()) == PARAM_COUNTS[variant]


def _check_built_model(variant):
    model = BUILDERS[variant]()
    assert model.count_params() == PARAM_COUNTS[variant]
    # The key table describes exactly this model's variables.
    config = keras_mixer.VARIANTS[variant]
    tokens = (224 // config["patch_size"]) ** 2
    expected = weights_lib.checkpoint_shapes(config, tokens, 1000)
    got = {k: tuple(v.shape) for k, v in weights_lib.checkpoint_variables(model).items()}
    assert got == expected
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("variant", ["S/32", "S/16", "S/8", "B/32", "B/16"])
def test_built_models_match_paper_counts(variant):
    _check_built_model(variant)


@pytest.mark.large
@pytest.mark.parametrize("variant", ["L/32", "L/16", "H/14"])
def test_built_large_models_match_paper_counts(variant):
    _check_built_model(variant)


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(), (None, 1000)),
        (dict(classes=7), (None, 7)),
        (dict(classes=7, classifier_activation=None, dropout=0.1), (None, 7)),
        (dict(include_top=False), (None, 4, 4, 16)),
        (dict(include_top=False, pooling="avg"), (None, 16)),
        (dict(include_top=False, pooling="max"), (None, 16)),
        (dict(size=(16, 32), include_top=False), (None, 4, 8, 16)),
    ],
)
def test_output_shapes(kwargs, shape):
    model = tiny_mixer(**kwargs)
    assert model.output_shape == shape
    out = model.predict(np.zeros((2, *model.input_shape[1:]), np.float32), verbose=0)
    assert out.shape == (2, *shape[1:])


def test_defaults_follow_keras_applications():
    model = keras_mixer.MixerS32()
    assert model.input_shape == (None, 224, 224, 3)
    assert model.name == "mixer_s32"
    assert model.get_layer("predictions").get_config()["activation"] == "softmax"
    # Zero-initialised head: random-init logits are exactly zero.
    logits = tiny_mixer(classifier_activation=None)
    np.testing.assert_array_equal(logits.predict(np.ones((1, 16, 16, 3)), verbose=0), 0.0)


@pytest.mark.parametrize("data_format", [None, "channels_last", "channels_first"])
def test_preprocess_input_returns_its_input_unchanged(data_format):
    # Rescaling is the model's first layer: the keras.applications hook must be
    # the identity, the same object with the same values (not a scaled copy, not
    # rescaled in place).
    for x in (np.arange(12.0).reshape(1, 2, 2, 3), np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)):
        before = x.copy()
        out = keras_mixer.preprocess_input(x, data_format=data_format)
        assert out is x
        assert out.dtype == before.dtype
        np.testing.assert_array_equal(out, before)


def test_logits_match_numpy_reference(tiny_checkpoint, rng):
    path, params = tiny_checkpoint
    model = keras_mixer.Mixer(TINY, weights=path, classifier_activation=None)
    x = images(rng, 4)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.logits(x, params), atol=1e-4)
    probs = keras_mixer.Mixer(TINY, weights=path).predict(x, verbose=0)
    np.testing.assert_allclose(probs, _softmax(reference.logits(x, params)), atol=1e-5)


def test_features_match_numpy_reference(tiny_checkpoint, rng):
    path, params = tiny_checkpoint
    x = images(rng, 2)
    feats = reference.features(x, params)  # (N, S, C) after the final norm
    grid = keras_mixer.Mixer(TINY, weights=path, include_top=False)
    np.testing.assert_allclose(grid.predict(x, verbose=0), feats.reshape(2, 4, 4, 16), atol=1e-4)
    avg = keras_mixer.Mixer(TINY, weights=path, include_top=False, pooling="avg")
    np.testing.assert_allclose(avg.predict(x, verbose=0), feats.mean(1), atol=1e-4)
    mx = keras_mixer.Mixer(TINY, weights=path, include_top=False, pooling="max")
    np.testing.assert_allclose(mx.predict(x, verbose=0), feats.max(1), atol=1e-4)


def test_gelu_is_the_tanh_form_in_both_spellings():
    x = np.linspace(-6, 6, 1001).astype(np.float32)
    want = reference.gelu_tanh(x.astype(np.float64))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gelu(x, "tanh")), want, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gelu(x, "sigmoid")), want, atol=1e-6)
    # The exact-erf GELU differs by far more than that: the test can tell them apart.
    erf = keras.ops.convert_to_numpy(keras.ops.gelu(x, approximate=False))
    assert np.abs(erf - want).max() > 1e-4


def test_sigmoid_gelu_model_gives_the_same_logits(tiny_checkpoint, rng):
    path, params = tiny_checkpoint
    model = keras_mixer.Mixer(TINY, weights=path, classifier_activation=None, gelu_form="sigmoid")
    x = images(rng, 2)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.logits(x, params), atol=1e-4)


def test_keras_save_load_round_trip(tmp_path, tiny_checkpoint, rng):
    path, _ = tiny_checkpoint
    model = keras_mixer.Mixer(TINY, weights=path, drop_path_rate=0.1, dropout=0.1)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = images(rng, 3)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.get_layer("MixerBlock_1").get_config() == model.get_layer("MixerBlock_1").get_config()
    model.save_weights(tmp_path / "m.weights.h5")
    again = keras_mixer.Mixer(
        TINY, weights=str(tmp_path / "m.weights.h5"), classes=7, input_shape=(16, 16, 3)
    )
    np.testing.assert_array_equal(again.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_stochastic_depth_rises_linearly_and_only_trains(rng):
    config = dict(TINY, num_blocks=3)
    model = keras_mixer.Mixer(config, input_shape=(16, 16, 3), drop_path_rate=0.5)
    rates = [model.get_layer(f"MixerBlock_{i}").drop_path_rate for i in range(3)]
    assert rates == [0.0, 0.25, 0.5]
    block = model.get_layer("MixerBlock_2")
    x = keras.ops.convert_to_tensor(rng.standard_normal((256, 16, 16)).astype(np.float32))
    # Inference is the paper's block: the same weights without drop path.
    plain = keras_mixer.MixerBlock(16, 16, 8, 32)
    plain.build(x.shape)
    plain.set_weights(block.get_weights())
    np.testing.assert_allclose(_np(block(x, training=False)), _np(plain(x)), atol=1e-6)
    # Training: per sample, each branch is dropped or kept scaled by 1/keep = 2.
    # Every sample is one of the four outcomes; over 256 samples all four appear.
    out = _np(block(x, training=True))
    outcomes = {(t, c): _np(_block_with_branch_scales(block, x, t, c))
                for t in (0.0, 2.0) for c in (0.0, 2.0)}
    seen = []
    for i in range(len(out)):
        matches = [k for k, want in outcomes.items() if np.allclose(out[i], want[i], atol=1e-5)]
        assert len(matches) == 1, f"sample {i} matches {matches}"
        seen.append(matches[0])
    assert set(seen) == set(outcomes)
    block_one = keras_mixer.MixerBlock(16, 16, 8, 32, drop_path_rate=0.999999, seed=1)
    y = _np(block_one(x, training=True))
    np.testing.assert_allclose(y, _np(x), atol=1e-5)  # both branches dropped


def _block_with_branch_scales(block, x, token_scale, channel_scale):
    """The block's two residual steps with each branch multiplied by a constant."""
    ops = keras.ops
    y = ops.transpose(block.token_mixing(ops.transpose(block.layer_norm_0(x), (0, 2, 1))), (0, 2, 1))
    x = x + token_scale * y
    return x + channel_scale * block.channel_mixing(block.layer_norm_1(x))


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def test_layers_serialize_their_constructor_arguments():
    block = keras_mixer.MixerBlock(16, 32, 8, 64, drop_path_rate=0.1, gelu_form="sigmoid", seed=3)
    config = block.get_config()
    # Every constructor argument is in the config (a round trip alone would pass
    # if one were dropped and silently defaulted on both sides).
    assert {k: config[k] for k in ("num_tokens", "hidden_dim", "tokens_mlp_dim", "channels_mlp_dim",
                                   "drop_path_rate", "gelu_form", "seed")} == dict(
        num_tokens=16, hidden_dim=32, tokens_mlp_dim=8, channels_mlp_dim=64, drop_path_rate=0.1,
        gelu_form="sigmoid", seed=3)
    rebuilt = keras_mixer.MixerBlock.from_config(config)
    assert rebuilt.get_config() == config
    mlp = keras_mixer.MlpBlock(8, 4, gelu_form="sigmoid", name="m")
    mlp_config = mlp.get_config()
    assert (mlp_config["hidden_units"], mlp_config["output_units"], mlp_config["gelu_form"],
            mlp_config["name"]) == (8, 4, "sigmoid", "m")
    assert keras_mixer.MlpBlock.from_config(mlp_config).get_config() == mlp_config


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)
