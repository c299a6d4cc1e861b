"""Callers (issue #19 items 13 and 15): feature_extractor's blocks, layer decay applied
twice, and `~` in every CLI path flag."""

import keras
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
