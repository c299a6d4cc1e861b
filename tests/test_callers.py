"""Callers' arguments as users write them: one path or a list, a size as an int,
and values of the wrong type refused by name."""

import pathlib

import numpy as np
import pytest
from helpers import TINY, key_parts
from journeys import photo

import keras_mixer
from keras_mixer.inference import predict


def test_predict_takes_one_path_or_a_pathlib_path(tmp_path):
    image = photo(tmp_path / "one.png", np.random.default_rng(0), size=(20, 20))
    model = keras_mixer.Mixer(TINY, input_shape=(16, 16, 3), classes=4)
    for given in (image, pathlib.Path(image), [pathlib.Path(image)]):
        result = predict(given, model=model, weights=None, top=2, labels=["a", "b", "c", "d"])
        assert len(result) == 1 and len(result[0]) == 2, given


def test_load_image_takes_an_int_size_and_refuses_a_bad_crop(tmp_path):
    image = photo(tmp_path / "one.png", np.random.default_rng(0), size=(30, 20))
    assert keras_mixer.load_image(image, 16).shape == (16, 16, 3)
    for fraction in (0, 2.0, float("nan"), True):
        with pytest.raises(ValueError, match=key_parts("crop_fraction:", "(0, 1]", repr(fraction))):
            keras_mixer.load_image(image, 16, crop_fraction=fraction)


def test_classes_true_is_not_one_class():
    with pytest.raises(ValueError, match=key_parts("classes:", "positive int", "True")):
        keras_mixer.Mixer(TINY, input_shape=(16, 16, 3), classes=True)
