"""Callers (issue #19 items 13 and 15): feature_extractor's blocks, layer decay applied
twice, a model compiled with layer decay saved and reloaded, and `~` in every CLI
path flag."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import TINY, TINY_SIZE, key_parts

import keras_mixer
from keras_mixer.cli import build_parser
from keras_mixer.model import feature_extractor


def _tiny():
    return keras_mixer.Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3), classes=3, weights=None)


def test_feature_extractor_takes_one_int_block_and_refuses_duplicates():
    model = _tiny()
    assert set(feature_extractor(model, blocks=1, pre_logits=False).output) == {"block_1"}
    assert set(feature_extractor(model, blocks=-1, pre_logits=False).output) == {"block_1"}
    with pytest.raises(ValueError, match=key_parts("blocks", "[0, -2]", "[0]")):
        feature_extractor(model, blocks=[0, -2])


def test_layer_decay_twice_is_refused():
    pytest.importorskip("tensorflow")
    from keras_mixer.training.layer_decay import with_layer_decay

    model = _tiny()
    optimizer = with_layer_decay(keras.optimizers.SGD(0.1), model, decay=0.5)
    with pytest.raises(ValueError, match=key_parts("optimizer", "LayerDecaySGD", "0.5")):
        with_layer_decay(optimizer, model, decay=0.5)
    assert type(optimizer).__name__ == "LayerDecaySGD"


@pytest.mark.parametrize("argv, dest", [
    (["predict", "~/a.png", "--model=~/m.keras", "--labels=~/l.txt"], ("images", "model", "labels")),
    (["convert", "~/c.npz", "--output=~/o.keras"], ("checkpoint", "output")),
    (["predict", "a.png", "--weights=~/w.weights.h5"], ("weights",)),
    (["export", "tflite", "~/m.keras", "-o", "~/m.tflite", "--labels=~/l.txt",
      "--data-dir=~/tfds"], ("model", "output", "labels", "data_dir")),
    (["export", "saved-model", "~/m.keras", "--output=~/served"], ("model", "output")),
    (["export", "onnx", "~/m.keras", "-o", "~/m.onnx"], ("model", "output")),
    (["export", "quantize", "~/f.tflite", "-o", "~/q.tflite"], ("float_tflite", "output")),
    (["export", "verify", "~/m.tflite", "~/m.keras"], ("tflite", "model")),
])
def test_cli_path_flags_expand_the_home_directory(argv, dest, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(argv)
    for name in dest:
        value = getattr(args, name)
        for v in value if isinstance(value, list) else [value]:
            if v != "a.png":
                assert v.startswith(str(tmp_path)) and "~" not in v, (name, v)


def _flat(model):
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def _step_in_new_process(imports, path, x, y, tmp_path):
    """One train_on_batch of the model at `path` reloaded (compiled) in a fresh
    interpreter after `imports`; its weights after the step, flattened."""
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "after.npy"
    code = textwrap.dedent(f"""
        {imports}
        import numpy as np
        model = keras.saving.load_model({str(path)!r})
        assert type(model.optimizer).__name__ == "LayerDecaySGD", type(model.optimizer)
        model.train_on_batch(np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "y.npy")!r}))
        np.save({str(out)!r}, np.concatenate([np.ravel(w) for w in model.get_weights()]))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)


def test_a_model_compiled_with_layer_decay_saves_and_reloads_with_its_scales(tmp_path):
    pytest.importorskip("tensorflow")
    from keras_mixer.training.layer_decay import with_layer_decay

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1])

    def compiled(optimizer):
        keras.utils.set_random_seed(1)
        model = _tiny()
        model.compile(optimizer=optimizer(model), loss="sparse_categorical_crossentropy")
        for _ in range(2):  # momentum slots that are not zero
            model.train_on_batch(x, y)
        return model

    model = compiled(lambda m: with_layer_decay(keras.optimizers.SGD(0.1, momentum=0.9), m,
                                                decay=0.5))
    path = tmp_path / "decayed.keras"
    model.save(path)
    model.train_on_batch(x, y)
    want = _flat(model)
    # The check can tell: the same steps without decay end elsewhere.
    plain = compiled(lambda m: keras.optimizers.SGD(0.1, momentum=0.9))
    plain.train_on_batch(x, y)
    assert not np.allclose(_flat(plain), want, atol=1e-6)
    for imports in ("import keras_mixer, keras", "import keras, keras_mixer"):
        got = _step_in_new_process(imports, path, x, y, tmp_path)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=imports)
    # keras_mixer.load_model gives the same optimizer back.
    loaded = keras_mixer.load_model(str(path))
    assert loaded.optimizer.layer_decay == 0.5
    assert loaded.optimizer.layer_scales == model.optimizer.layer_scales


def test_layer_decay_of_an_own_optimizer_class_reloads_once_its_class_is_made(tmp_path):
    pytest.importorskip("tensorflow")
    from keras_mixer.training.layer_decay import decayed_class, with_layer_decay

    @keras.saving.register_keras_serializable(package="test_callers_more")
    class OwnSGD(keras.optimizers.SGD):
        pass

    model = _tiny()
    model.compile(optimizer=with_layer_decay(OwnSGD(0.1), model, decay=0.5),
                  loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "own.keras")
    assert decayed_class(OwnSGD) is type(model.optimizer)
    loaded = keras.saving.load_model(tmp_path / "own.keras")
    assert type(loaded.optimizer).__name__ == "LayerDecayOwnSGD"
    with pytest.raises(ValueError, match=key_parts("base", "LossScaleOptimizer")):
        decayed_class(keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match=key_parts("optimizer", "LossScaleOptimizer")):
        with_layer_decay(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), model,
                         decay=0.5)
