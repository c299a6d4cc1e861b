"""Pretrained weights: strict loading, downloads, high resolution, bad input."""

import os
import pathlib
import shutil

import keras
import numpy as np
import pytest
import conftest
import reference
from helpers import TINY, images, key_parts, tiny_mixer, write_checkpoint

import keras_mixer
from keras_mixer.weights import npz as npz_format
from keras_mixer import weights as weights_lib


def test_unknown_variant_lists_the_valid_ones():
    every = "['S/32', 'S/16', 'S/8', 'B/32', 'B/16', 'L/32', 'L/16', 'H/14']"
    with pytest.raises(ValueError, match=key_parts("variant:", every, "'X/7'")):
        keras_mixer.Mixer("X/7")
    with pytest.raises(ValueError, match=key_parts("variant:", "positive int", "{'patch_size': 0}")):
        keras_mixer.Mixer(dict(TINY, patch_size=0))


def test_weights_tag_not_released_for_variant_lists_valid_tags():
    with pytest.raises(ValueError, match=key_parts(
            "weights:", "'imagenet21k'", "S/32", "[None, 'imagenet', 'imagenet_gsam', 'hf://OWNER/REPO'")):
        keras_mixer.MixerS32(weights="imagenet21k")
    with pytest.raises(ValueError, match=key_parts(
            "weights:", "[None, 'imagenet', 'imagenet21k', 'imagenet_sam', 'imagenet_gsam', "
            "'imagenet_miil', 'imagenet21k_miil'", "'imagenet1k'")):
        keras_mixer.MixerB16(weights="imagenet1k")


def test_head_arguments_must_fit_the_checkpoint(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(ValueError, match=key_parts("classes:", path, "7-class", "classes=10")):
        keras_mixer.Mixer(TINY, weights=path, classes=10)
    with pytest.raises(ValueError, match=key_parts("classes:", "'imagenet'", "1000-class", "classes=10")):
        keras_mixer.MixerB16(weights="imagenet", classes=10)  # raised before any download
    with pytest.raises(ValueError, match=key_parts("classifier_activation:", "'softmax' or None", "'sigmoid'")):
        keras_mixer.Mixer(TINY, weights=path, classifier_activation="sigmoid")
    # Without the top, any head is the user's business.
    model = keras_mixer.Mixer(TINY, weights=path, include_top=False, pooling="avg", classes=10)
    assert model.output_shape == (None, 16)


def test_input_shape_errors_name_the_value(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(ValueError, match=key_parts("input_shape:", "(height, width, channels)", "(16, 16)")):
        keras_mixer.Mixer(TINY, input_shape=(16, 16))
    with pytest.raises(ValueError, match=key_parts("input_shape:", "positive ints", "(16, 0, 3)")):
        keras_mixer.Mixer(TINY, input_shape=(16, 0, 3))
    with pytest.raises(ValueError, match=key_parts("input_shape:", f"{path!r}", "3 (RGB)", "(16, 16, 1)")):
        keras_mixer.Mixer(TINY, weights=path, input_shape=(16, 16, 1))
    with pytest.raises(ValueError, match=key_parts(
            "input_shape:", f"weights={path!r}", "16x16", "multiples of 16x16", "(24, 24, 3)")):
        keras_mixer.Mixer(TINY, weights=path, input_shape=(24, 24, 3))
    with pytest.raises(ValueError, match=key_parts("input_shape:", "weights='imagenet'", "224x224", "(336, 336, 3)")):
        keras_mixer.MixerB16(weights="imagenet", input_shape=(336, 336, 3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pooling="mean", include_top=False), ("pooling:", "(None, 'avg', 'max')", "'mean'")),
        (dict(dropout=1.5), ("dropout:", "[0, 1)", "1.5")),
        (dict(drop_path_rate=-0.1), ("drop_path_rate:", "[0, 1)", "-0.1")),
        (dict(classes=0), ("classes:", "positive int", "0")),
        (dict(include_top="yes"), ("include_top:", "True or False", "'yes'")),
        (dict(gelu_form="gauss"), ("gelu_form:", "('tanh', 'sigmoid', 'erf')", "'gauss'")),
    ],
)
def test_option_errors(kwargs, message):
    with pytest.raises(ValueError, match=key_parts(*message)):
        tiny_mixer(**kwargs)


def test_missing_truncated_pickled_and_foreign_files(tmp_path, tiny_checkpoint):
    path, params = tiny_checkpoint
    with pytest.raises(FileNotFoundError, match=key_parts("weights:", repr(str(tmp_path / "nope.npz")))):
        keras_mixer.Mixer(TINY, weights=str(tmp_path / "nope.npz"))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(pathlib.Path(path).read_bytes()[:1000])
    with pytest.raises(ValueError, match=key_parts("weights:", repr(str(truncated)), "readable checkpoint")):
        keras_mixer.Mixer(TINY, weights=str(truncated))
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match=key_parts("weights:", repr(str(text)), "readable checkpoint")):
        keras_mixer.Mixer(TINY, weights=str(text))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**params, "stem/bias": np.array([object()], dtype=object)})
    # Refused from its header: an object array is never unpickled.
    with pytest.raises(ValueError, match=key_parts(
            "weights:", repr(str(pickled)), "'stem/bias", "object")):
        keras_mixer.Mixer(TINY, weights=str(pickled))
    with pytest.raises(ValueError, match=key_parts(
            "weights:", "[None, 'hf://OWNER/REPO', 'a path to a .npz, .weights.h5 or .keras file",
            "'model.pt'")):
        keras_mixer.Mixer(TINY, weights="model.pt")


def test_checkpoint_of_another_variant_names_first_mismatched_key(tmp_path, rng):
    wide = reference.random_checkpoint(rng, 2, 4, 24, 8, 32, tokens=16, classes=7)
    path = write_checkpoint(tmp_path / "wide.npz", wide)
    # Every array sized by hidden_dim (24 here, 16 in TINY) is mis-shaped: stem 2,
    # per block 4 norm arrays and 3 channel-MLP arrays, final norm 2, head kernel 1.
    with pytest.raises(ValueError, match=key_parts(
            "weights:", repr(path), "nothing was loaded", "19 mis-shaped", "'stem/kernel'",
            "(4, 4, 3, 24)", "(4, 4, 3, 16)")):
        keras_mixer.Mixer(TINY, weights=path)


def test_missing_and_extra_keys_are_named(tmp_path, tiny_checkpoint):
    _, params = tiny_checkpoint
    short = {k: v for k, v in params.items() if k != "MixerBlock_1/LayerNorm_1/scale"}
    with pytest.raises(ValueError, match=key_parts("weights:", "1 missing", "['MixerBlock_1/LayerNorm_1/scale']")):
        keras_mixer.Mixer(TINY, weights=write_checkpoint(tmp_path / "short.npz", short))
    extra = {**params, "MixerBlock_2/LayerNorm_0/scale": np.ones(16, np.float32)}
    with pytest.raises(ValueError, match=key_parts("weights:", "1 unexpected", "['MixerBlock_2/LayerNorm_0/scale']")):
        keras_mixer.Mixer(TINY, weights=write_checkpoint(tmp_path / "extra.npz", extra))


def test_a_bad_array_never_loads_partially(tiny_checkpoint):
    path, params = tiny_checkpoint
    model = tiny_mixer(classes=7)
    before = [np.array(w) for w in model.get_weights()]
    bad = {**params, "head/bias": np.zeros(3, np.float32)}  # the last key in the table
    with pytest.raises(ValueError, match=key_parts("weights:", "'head/bias'", "(3,)", "(7,)", "nothing was loaded")):
        weights_lib.assign_checkpoint(model, bad)
    after = model.get_weights()
    assert len(after) == len(before) == len(params)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="not_mixer")
    with pytest.raises(ValueError, match=key_parts("model:", "'not_mixer'", "not a Mixer")):
        weights_lib.checkpoint_variables(other)


def test_high_resolution_tiles_are_mixed_like_the_base_model(tiny_checkpoint, rng):
    """2x2 tiling of four images: after the first token-mixing step, each tile's
    tokens equal what the base-resolution model gives for that image (Appendix C)."""
    path, params = tiny_checkpoint
    big = keras_mixer.Mixer(TINY, weights=path, input_shape=(32, 32, 3), classifier_activation=None)
    assert big.get_layer("MixerBlock_0").tokens_mlp_dim == 4 * TINY["tokens_mlp_dim"]
    big_params = {k: np.array(v) for k, v in weights_lib.checkpoint_variables(big).items()}
    quads = images(rng, 4)
    mosaic = np.zeros((1, 32, 32, 3), np.float32)
    for t, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[0, 16 * r:16 * r + 16, 16 * c:16 * c + 16] = quads[t]
    mixed = reference.token_mixing_step(reference.stem(mosaic, big_params), big_params, "MixerBlock_0")
    grid = mixed.reshape(8, 8, -1)
    for t, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        want = reference.token_mixing_step(reference.stem(quads[t:t + 1], params), params, "MixerBlock_0")
        got = grid[4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(1, 16, -1)
        np.testing.assert_allclose(got, want, atol=1e-5)
    # And the Keras model computes the paper's equations with those tiled weights.
    np.testing.assert_allclose(
        big.predict(mosaic, verbose=0), reference.logits(mosaic, big_params), atol=1e-4
    )


def test_high_resolution_allows_different_factors_per_axis(tiny_checkpoint, rng):
    path, params = tiny_checkpoint
    tall = keras_mixer.Mixer(TINY, weights=path, input_shape=(32, 16, 3), include_top=False)
    top, bottom = images(rng, 1), images(rng, 1)
    x = np.concatenate([top, bottom], axis=1)
    tall_params = {k: np.array(v) for k, v in weights_lib.checkpoint_variables(tall).items()}
    mixed = reference.token_mixing_step(reference.stem(x, tall_params), tall_params, "MixerBlock_0")
    want = reference.token_mixing_step(reference.stem(bottom, params), params, "MixerBlock_0")
    np.testing.assert_allclose(mixed[:, 16:], want, atol=1e-5)


# The S/32 GSAM file, at its real size, served from a file:// "bucket".
@pytest.fixture
def s32_bucket(tmp_path, rng):
    config = keras_mixer.VARIANTS["S/32"]
    params = reference.random_checkpoint(
        rng, config["num_blocks"], 32, 512, 256, 2048, tokens=49, classes=1000
    )
    bucket = tmp_path / "bucket"
    (bucket / "gsam").mkdir(parents=True)
    write_checkpoint(bucket / "gsam" / "Mixer-S_32.npz", params)
    return bucket, params


def test_download_through_get_file_from_a_file_url(tmp_path, monkeypatch, s32_bucket, rng):
    bucket, params = s32_bucket
    cache = tmp_path / "cache"
    monkeypatch.setenv(weights_lib.MIRROR_ENV, bucket.as_uri() + "/")
    path = weights_lib.get_weights_file("imagenet_gsam", "S/32", cache_dir=str(cache))
    assert path == str(cache / "keras_mixer" / "gsam_Mixer-S_32.npz")
    # Cached: a second call does not need the source any more.
    os.rename(bucket, tmp_path / "gone")
    assert weights_lib.get_weights_file("imagenet_gsam", "S/32", cache_dir=str(cache)) == path
    # The builder goes the same way, into Keras' own cache: on a fresh machine
    # its keras_mixer/ folder does not exist yet (conftest points KERAS_HOME at
    # this run's sandbox, so removing it touches nothing of the user's).
    home = os.environ["KERAS_HOME"]
    assert home.startswith(conftest.SANDBOX)
    shutil.rmtree(os.path.join(home, "keras_mixer"), ignore_errors=True)
    monkeypatch.setenv(weights_lib.MIRROR_ENV, (tmp_path / "gone").as_uri())
    model = keras_mixer.MixerS32(weights="imagenet_gsam", classifier_activation=None)
    assert os.path.isfile(os.path.join(home, "keras_mixer", "gsam_Mixer-S_32.npz"))
    assert not [f for f in os.listdir(os.path.join(home, "keras_mixer")) if "partial" in f]
    x = images(rng, 1, size=224)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.logits(x, params), atol=1e-4)


def test_download_is_kept_where_get_file_put_it_when_keras_home_is_missing(monkeypatch, s32_bucket):
    """A fresh machine without ~/.keras: get_file falls back to /tmp/.keras, and the
    file is renamed there (it was renamed towards the missing home before)."""
    bucket, _ = s32_bucket
    home = os.environ["KERAS_HOME"]
    assert home.startswith(conftest.SANDBOX)
    shutil.rmtree(home, ignore_errors=True)
    monkeypatch.setenv(weights_lib.MIRROR_ENV, bucket.as_uri() + "/")
    fallback = os.path.join("/tmp", ".keras", "keras_mixer", "gsam_Mixer-S_32.npz")
    existed = os.path.exists(fallback)
    try:
        path = weights_lib.get_weights_file("imagenet_gsam", "S/32")
        assert path == fallback and npz_format.npz_headers(path)
    finally:
        if not existed and os.path.exists(fallback):
            os.remove(fallback)
        os.makedirs(home, exist_ok=True)


def test_mirror_directory_is_used_in_place(monkeypatch, s32_bucket):
    bucket, _ = s32_bucket
    monkeypatch.setenv(weights_lib.MIRROR_ENV, str(bucket))
    assert weights_lib.get_weights_file("imagenet_gsam", "S/32") == str(bucket / "gsam" / "Mixer-S_32.npz")
    with pytest.raises(FileNotFoundError, match=key_parts(
            f"KERAS_MIXER_WEIGHTS_URL={str(bucket)!r}", "'gsam/Mixer-B_16.npz'", "not in it")):
        weights_lib.get_weights_file("imagenet_gsam", "B/16")


def test_download_failure_says_which_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(weights_lib.MIRROR_ENV, raising=False)
    monkeypatch.setattr(weights_lib.download, "BASE_URL", (tmp_path / "offline").as_uri() + "/")
    cache = tmp_path / "cache"
    with pytest.raises(OSError) as info:
        weights_lib.get_weights_file("imagenet", "B/16", cache_dir=str(cache))
    message = str(info.value)
    assert "weights:" in message and "'imagenet'" in message and "B/16" in message
    assert f"from {(tmp_path / 'offline').as_uri()}/imagenet1k/Mixer-B_16.npz" in message
    assert f"put it at {cache / 'keras_mixer' / 'imagenet1k_Mixer-B_16.npz'}" in message
    assert "KERAS_MIXER_WEIGHTS_URL" in message
    assert not (cache / "keras_mixer" / "imagenet1k_Mixer-B_16.npz").exists()


def test_tags_say_what_the_files_are():
    assert "from-scratch files for B/16 and L/16" in weights_lib.CHECKPOINTS["imagenet"]["description"]
    assert weights_lib.CHECKPOINTS["imagenet"]["files"]["S/32"] == "gsam/Mixer-S_32.npz"
    assert "not fine-tuned" in weights_lib.CHECKPOINTS["imagenet21k"]["description"]
    assert weights_lib.CHECKPOINTS["imagenet21k"]["classes"] == 21843
    assert weights_lib.available_tags("B/16") == ["imagenet", "imagenet21k", "imagenet_sam",
                                                  "imagenet_gsam", "imagenet_miil", "imagenet21k_miil"]
    assert weights_lib.available_tags("S/8") == ["imagenet", "imagenet_gsam"]
    assert weights_lib.available_tags("H/14") == []
    assert "'imagenet_gsam'" in keras_mixer.MixerS8.__doc__


@pytest.mark.large
def test_real_size_b16_checkpoint_matches_reference(tmp_path, rng):
    params = reference.random_checkpoint(rng, 12, 16, 768, 384, 3072, tokens=196, classes=1000)
    path = write_checkpoint(tmp_path / "Mixer-B_16.npz", params)
    model = keras_mixer.MixerB16(weights=path, classifier_activation=None)
    x = images(rng, 2, size=224)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.logits(x, params), atol=1e-4)


def test_npz_shapes_reads_headers_like_np_load(tiny_checkpoint, tmp_path):
    path, params = tiny_checkpoint
    want = {k: (v.shape, v.dtype.name) for k, v in params.items()}
    assert npz_format.npz_headers(path) == want
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **params)
    assert npz_format.npz_headers(str(compressed)) == want
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=key_parts("weights:", repr(str(fake)), "readable checkpoint")):
        npz_format.npz_headers(str(fake))
