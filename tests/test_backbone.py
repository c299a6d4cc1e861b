"""The backbone API: intermediate features, layer-wise learning-rate decay."""

import keras
import numpy as np
import pytest

import keras_mixer
import reference
from helpers import TINY, TINY_SIZE, images, tiny_params, write_checkpoint
from keras_mixer.training.layer_decay import with_layer_decay


def test_feature_extractor_gives_the_reference_maps_and_pre_logits(tmp_path, rng):
    params = tiny_params(rng)
    model = keras_mixer.Mixer(TINY, weights=write_checkpoint(tmp_path / "t.npz", params),
                              input_shape=(TINY_SIZE, TINY_SIZE, 3))
    features = keras_mixer.feature_extractor(model, blocks=[0, -1])
    x = images(rng, 2)
    out = features.predict(x, verbose=0)
    assert sorted(out) == ["block_0", "block_1", "pre_logits"]
    grid = TINY_SIZE // TINY["patch_size"]
    tokens = reference.stem(x, params)
    for i in range(2):
        tokens = reference.mixer_block(tokens, params, f"MixerBlock_{i}")
        want = tokens.reshape(2, grid, grid, TINY["hidden_dim"])  # row-major token grid
        np.testing.assert_allclose(out[f"block_{i}"], want, atol=1e-4)
    np.testing.assert_allclose(out["pre_logits"], reference.features(x, params).mean(1), atol=1e-4)
    # The weights are shared: the extractor is the same network.
    assert {id(v) for v in features.weights} <= {id(v) for v in model.weights}


def test_feature_extractor_trains_with_fit(rng):
    model = keras_mixer.Mixer(TINY, include_top=False, input_shape=(TINY_SIZE, TINY_SIZE, 3))
    features = keras_mixer.feature_extractor(model, blocks=[1], pre_logits=False)
    seg = keras.layers.Dense(3, name="seg")(features.output["block_1"])
    net = keras.Model(features.input, seg)
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_layer("stem").kernel.numpy().copy()
    net.fit(images(rng, 4), rng.integers(0, 3, (4, 4, 4)), epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("stem").kernel.numpy())


def test_feature_extractor_errors():
    model = keras_mixer.Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3))
    with pytest.raises(ValueError, match=r"blocks: expected block indices in \[-2, 2\); got \[5\]"):
        keras_mixer.feature_extractor(model, blocks=[5])
    with pytest.raises(ValueError, match=r"model: 'd' has no MixerBlock layers"):
        keras_mixer.feature_extractor(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)],
                                                       name="d"))


def test_layer_decay_scales_each_depth_of_an_sgd_step(rng):
    model = keras_mixer.Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3), classes=3)
    x, y = images(rng, 4), keras.utils.to_categorical(rng.integers(0, 3, 4), 3)
    head = model.get_layer("head").kernel  # zero-initialised: no gradient would reach below
    head.assign(rng.normal(0, 1, head.shape).astype("float32"))
    # Gradients at the starting point, from a plain SGD step with learning rate 1.
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.compile(optimizer=keras.optimizers.SGD(1.0), loss="categorical_crossentropy")
    start = {v.path: v.numpy().copy() for v in plain.weights}
    plain.train_on_batch(x, y)
    step = {v.path: start[v.path] - v.numpy() for v in plain.weights}
    optimizer = with_layer_decay(keras.optimizers.SGD(1.0), model, decay=0.5)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    # 2 blocks: head/final norm x1, MixerBlock_1 x0.5, MixerBlock_0 x0.25, stem x0.125
    for v in model.weights:
        scale = {"stem": 0.125, "MixerBlock_0": 0.25, "MixerBlock_1": 0.5}.get(
            v.path.split("/")[0], 1.0)
        np.testing.assert_allclose(start[v.path] - v.numpy(), scale * step[v.path],
                                   rtol=1e-4, atol=1e-7, err_msg=v.path)
    assert all(np.abs(step[p]).sum() > 0 for p in step)  # every weight moved


def test_layer_decay_argument_errors():
    model = keras_mixer.Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3))
    with pytest.raises(ValueError, match=r"layer_decay: expected a number in \(0, 1\]; got 1.5"):
        with_layer_decay(keras.optimizers.SGD(), model, decay=1.5)
    with pytest.raises(ValueError, match=r"optimizer: expected a keras.optimizers.Optimizer; got 'sgd'"):
        with_layer_decay("sgd", model, decay=0.5)


def test_layer_decay_is_a_recipe_field_and_a_flag():
    from keras_mixer.cli import build_parser
    from keras_mixer.cli.train import _overrides
    from keras_mixer.training.recipes import get_recipe
    from keras_mixer.training.trainer import make_optimizer

    args = build_parser().parse_args(["train", "--layer-decay", "0.75"])
    assert _overrides(args)["layer_decay"] == 0.75
    assert get_recipe("finetune")["layer_decay"] == 1.0  # off unless asked for
    hp = get_recipe("finetune", {"layer_decay": 0.75})
    model = keras_mixer.Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3))
    optimizer = make_optimizer(hp, 100, model)
    assert type(optimizer).__name__ == "LayerDecaySGD" and optimizer.layer_decay == 0.75
    assert type(make_optimizer(get_recipe("finetune"), 100, model)).__name__ == "SGD"
    with pytest.raises(ValueError, match=r"layer_decay: expected a number in \(0, 1\].*; got 0"):
        get_recipe("finetune", {"layer_decay": 0})
