"""Labels, the eval transform, the predict/convert commands, the JAX backend."""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import reference
from helpers import TINY, images, key_parts, tiny_keras_file, write_checkpoint
from PIL import Image

import keras_mixer
from keras_mixer import cli, inference
from keras_mixer.labels import imagenet_labels
from keras_mixer.preprocessing import eval_resize_crop, load_image


def test_labels_ship_offline_in_imagenet_order():
    labels = imagenet_labels(1000)
    assert len(labels) == 1000 and len(imagenet_labels(21843)) == 21843
    assert labels[0] == ("n01440764", "tench")
    assert labels[281] == ("n02123045", "tabby")
    assert labels[999] == ("n15075141", "toilet_tissue")  # Keras' own spelling
    assert labels[386] == ("n02504458", "African_elephant")
    wnids = [w for w, _ in labels]
    assert wnids == sorted(wnids)  # TFDS imagenet2012 order: sorted WordNet ids


def test_decode_predictions_equals_keras_ties_included(monkeypatch):
    """Same tuples as keras.applications' decode_predictions, given the same class
    index (Keras downloads its index; here it is served from our list)."""
    from keras.src.applications import imagenet_utils

    index = {str(i): list(pair) for i, pair in enumerate(imagenet_labels(1000))}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    probs = np.zeros((3, 1000), np.float32)
    probs[0, [5, 7, 9]] = 0.3  # a three-way tie: ordered as Keras orders it
    probs[1] = np.random.default_rng(0).random(1000)
    probs[2, 386] = 1.0
    for top in (1, 3, np.int64(5)):
        ours = keras_mixer.decode_predictions(probs, top=top)
        theirs = imagenet_utils.decode_predictions(probs, top=int(top))
        assert [[(w, n, pytest.approx(s)) for w, n, s in row] for row in ours] == \
            [[tuple(t) for t in row] for row in theirs]


def test_decode_predictions_top_k():
    probs = np.zeros((2, 1000), np.float32)
    probs[0, [281, 0, 5]] = [0.7, 0.2, 0.1]
    probs[1, 999] = 1.0
    decoded = keras_mixer.decode_predictions(probs, top=3)
    assert decoded[0] == [("n02123045", "tabby", pytest.approx(0.7)),
                          ("n01440764", "tench", pytest.approx(0.2)),
                          ("n01496331", "electric_ray", pytest.approx(0.1))]
    assert decoded[1][0][:2] == ("n15075141", "toilet_tissue")
    big = np.zeros((1, 21843)); big[0, 5] = 1
    assert keras_mixer.decode_predictions(big, top=1)[0][0][0] == imagenet_labels(21843)[5][0]
    with pytest.raises(ValueError, match=key_parts("preds:", "(batch, 1000)", "(batch, 21843)", "(2, 10)")):
        keras_mixer.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=key_parts("top:", "[1, 1000]", "0")):
        keras_mixer.decode_predictions(probs, top=0)


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    # A 256x512 image whose middle 256 columns are white: after resizing the
    # shorter side to 256 and cropping 224 from the centre, it is all white.
    image = np.zeros((256, 512, 3), np.uint8)
    image[:, 128:384] = 255
    out = np.asarray(eval_resize_crop(image, (224, 224)))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 255.0, atol=1e-3)
    small = np.asarray(eval_resize_crop(np.full((40, 30, 3), 7, np.uint8), (16, 16)))
    np.testing.assert_allclose(small, 7.0, atol=1e-3)


@pytest.mark.parametrize("size", [(16, 16), (16, 24)])
def test_eval_transform_is_the_same_on_arrays_and_tensors(rng, size):
    # keras.ops serves load_image and the model core; TensorFlow serves tf.data and
    # the SavedModel's image-bytes signature: both must give one image. Odd sizes,
    # both orientations, up- and downscaling, so the resize and the crop offsets
    # are computed in both paths.
    import tensorflow as tf

    for shape in [(37, 53), (53, 37), (17, 19), (101, 61), (23, 23)]:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        array = np.asarray(eval_resize_crop(image, size))
        tensor = eval_resize_crop(tf.constant(image), size)
        assert isinstance(tensor, tf.Tensor) and not isinstance(array, tf.Tensor)
        assert array.shape == tuple(tensor.shape) == (*size, 3)
        np.testing.assert_allclose(array, tensor.numpy(), atol=1e-3, err_msg=f"{shape} -> {size}")
        assert array.std() > 10  # real pixels, not a constant both paths could agree on


def test_load_image_refuses_too_many_pixels_before_decoding(tmp_path, rng, monkeypatch):
    from PIL import ImageFile

    path = _png(tmp_path / "a.png", rng)  # 40x48 = 1,920 pixels
    assert load_image(path, (16, 16), max_pixels=1920).shape == (16, 16, 3)  # the limit is allowed

    def decode(self):
        raise AssertionError("the image was decoded")

    # Decoding is Pillow's load(); the header alone must be enough to refuse.
    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ValueError, match=key_parts("path:", repr(path), "1,920 pixels", "max_pixels=1,919")):
        load_image(path, (16, 16), max_pixels=1919)


def _png(path, rng, size=40):
    Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_predict_command_ranks_like_the_model(tmp_path, rng, tiny_checkpoint, capsys):
    keras_file, model = tiny_keras_file(tmp_path / "tiny.keras", tiny_checkpoint[0])
    files = [_png(tmp_path / "a.png", rng), _png(tmp_path / "b.png", rng)]
    results = inference.predict(files, model=keras_file, weights=None, top=3)
    x = np.stack([load_image(f, (16, 16)) for f in files])
    probs = model.predict(x, verbose=0)
    assert not np.array_equal(probs[0].argsort(), probs[1].argsort())  # the images are told apart
    for row, result in zip(probs, results):
        assert [int(label) for label, _ in result] == list(np.argsort(-row, kind="stable")[:3])
        np.testing.assert_allclose([score for _, score in result], np.sort(row)[::-1][:3], atol=1e-6)
    (tmp_path / "names.txt").write_text("\n".join(f"class {i}" for i in range(7)))
    argv = ["predict", *files, "--model", keras_file, "--top", "2",
            "--labels", str(tmp_path / "names.txt")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    # Each file, then its top 2: "  1. class 4        0.2931".
    assert [printed[0], printed[3]] == files and len(printed) == 6
    for lines, row in ((printed[1:3], probs[0]), (printed[4:6], probs[1])):
        ranked = np.argsort(-row, kind="stable")[:2]
        for rank, (line, k) in enumerate(zip(lines, ranked), 1):
            number, label, score = re.fullmatch(r"\s+(\d)\. (.+?)\s+(\d\.\d{4})", line).groups()
            assert (int(number), label, float(score)) == (rank, f"class {k}", round(float(row[k]), 4))


def test_predict_errors(tmp_path, rng, tiny_checkpoint, capsys):
    keras_file, _ = tiny_keras_file(tmp_path / "tiny.keras", tiny_checkpoint[0])
    png = _png(tmp_path / "a.png", rng)
    missing = str(tmp_path / "missing.png")
    assert cli.main(["predict", png, missing, "--model", keras_file]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-mixer predict: error: images:")
    assert repr(missing) in err and repr(png) not in err  # names only the missing file
    with pytest.raises(ValueError, match=key_parts("labels:", "7 classes", "2 labels")):
        inference.predict([png], model=keras_file, weights=None, top=1, labels=["a", "b"])
    with pytest.raises(ValueError, match=key_parts("top:", "[1, 7]", "9")):
        inference.predict([png], model=keras_file, weights=None, top=9)
    with pytest.raises(ValueError, match=key_parts("weights:", ".keras", "'imagenet'")):
        inference.predict([png], model=keras_file, weights="imagenet")


def test_convert_npz_to_keras_and_weights_h5(tmp_path, rng, tiny_checkpoint, capsys):
    path, params = tiny_checkpoint
    out = tmp_path / "tiny.keras"
    assert cli.main(["convert", path, "-o", str(out)]) == 0
    printed = capsys.readouterr().out  # names the file and its parameter count
    assert str(out) in printed and f"{sum(v.size for v in params.values()):,} parameters" in printed
    x = images(rng, 2)
    probs = keras.models.load_model(out).predict(x, verbose=0)
    np.testing.assert_allclose(np.log(probs) - np.log(probs[:, :1]),
                               reference.logits(x, params) - reference.logits(x, params)[:, :1], atol=1e-4)
    h5 = tmp_path / "tiny.weights.h5"
    inference.convert(path, str(h5), input_size=32)  # 2x resolution: tiled token MLPs
    big = keras_mixer.Mixer(dict(TINY, tokens_mlp_dim=32), weights=str(h5), input_shape=(32, 32, 3), classes=7)
    direct = keras_mixer.Mixer(TINY, weights=path, input_shape=(32, 32, 3))
    x2 = images(rng, 1, size=32)
    np.testing.assert_array_equal(big.predict(x2, verbose=0), direct.predict(x2, verbose=0))
    before = out.read_bytes()
    assert cli.main(["convert", path, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "output:" in err and repr(str(out)) in err and "--overwrite" in err
    assert out.read_bytes() == before
    with pytest.raises(ValueError, match=key_parts("model:", repr(path), str(TINY), "'B/16'")):
        inference.convert(path, str(tmp_path / "x.keras"), model="B/16")
    with pytest.raises(ValueError, match=key_parts("output:", ".keras or .weights.h5", "'x.h5'")):
        inference.convert(path, "x.h5")


def test_convert_names_a_real_variant(tmp_path, rng):
    params = reference.random_checkpoint(rng, 8, 32, 512, 256, 2048, tokens=49, classes=1000)
    path = write_checkpoint(tmp_path / "Mixer-S_32.npz", params)
    model = inference.convert(path, str(tmp_path / "s32.weights.h5"), model="S/32")
    assert model.name == "mixer_s32" and model.count_params() == 19_104_624


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_model_runs_under_the_jax_backend(tiny_checkpoint, rng, tmp_path):
    path, params = tiny_checkpoint
    x = images(rng, 2)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, keras, keras_mixer\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"cfg = {TINY!r}\n"
        f"m = keras_mixer.Mixer(cfg, weights={path!r}, classifier_activation=None)\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference.logits(x, params), atol=1e-4)
