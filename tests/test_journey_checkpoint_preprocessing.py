"""Journey: a checkpoint's own preprocessing reaches every consumer.

A timm-layout repository whose config says crop_pct 0.95, bilinear, ImageNet
mean/std (not the authors' 0.875, bicubic, 0.5/0.5) -> predict, evaluate,
TFLite int8 export (calibration and sidecar), SavedModel image-bytes
signature: each applies the same transform, read from the model.
"""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
import timm_reference
from journeys import S32, photo

import keras_mixer
from keras_mixer.export import data as export_data
from keras_mixer.export import export_saved_model, export_tflite, metadata
from keras_mixer.inference import predict
from keras_mixer.preprocessing import EvalTransform, load_image
from keras_mixer.training.evaluation import evaluate

CONFIG = dict(architecture="mixer_s32_224", tag="in1k_custom", mean=(0.485, 0.456, 0.406),
              std=(0.229, 0.224, 0.225), interpolation="bilinear", crop_pct=0.95)
OWN = EvalTransform((224, 224), crop_fraction=0.95, interpolation="bilinear")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    sd = timm_reference.random_state_dict(
        np.random.default_rng(0), blocks=S32["num_blocks"], patch=32, hidden=S32["hidden"],
        d_s=S32["d_s"], d_c=S32["d_c"], tokens=S32["tokens"], classes=10)
    return str(timm_reference.write_repo(tmp_path_factory.mktemp("repo") / "s32", sd,
                                         classes=10, **CONFIG)), sd


def test_the_model_carries_the_checkpoints_transform(repo):
    path, sd = repo
    model = keras_mixer.MixerS32(weights=path, classifier_activation=None)
    assert EvalTransform.of(model) == OWN
    x = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    want = timm_reference.logits(x, sd, mean=CONFIG["mean"], std=CONFIG["std"], gelu_form="erf")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-4)


def test_predict_and_the_savedmodel_bytes_signature_agree(repo, tmp_path):
    path, _ = repo
    image = photo(tmp_path / "photo.png", np.random.default_rng(2), size=(400, 300))
    got = predict([image], model="S/32", weights=path, top=3, labels="digits")[0]
    model = keras_mixer.MixerS32(weights=path)
    by_hand = model.predict(load_image(image, OWN)[None], verbose=0)[0]
    assert [float(s) for _, s in got] == pytest.approx(sorted(by_hand)[::-1][:3], abs=1e-6)
    serving = export_saved_model(model, str(tmp_path / "serving"), top_k=3, labels="digits")
    loaded = tf.saved_model.load(serving)
    with open(image, "rb") as f:
        out = loaded.signatures["serve_bytes"](image_bytes=tf.constant([f.read()]))
    assert [s.decode() for s in out["labels"].numpy()[0]] == [name for name, _ in got]
    np.testing.assert_allclose(out["scores"].numpy()[0], [s for _, s in got], atol=1e-5)


def blobs(path, rng):
    """A PNG of 6 x 6 coloured blocks at a random size and aspect ratio: its
    border and fine structure make the crop and the interpolation matter."""
    size = tuple(int(v) for v in rng.integers(120, 400, 2))
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.NEAREST).save(path)
    return str(path)


def test_evaluate_uses_the_checkpoints_transform(repo, tmp_path):
    path, _ = repo
    model = keras_mixer.MixerS32(weights=path)
    rng = np.random.default_rng(3)
    images = [blobs(tmp_path / f"{i}.png", rng) for i in range(24)]

    def answers(transform):
        x = np.stack([load_image(image, transform) for image in images])
        return model.predict(x, verbose=0).argmax(-1)

    # Each test image is filed under the class predict gives it with the
    # checkpoint's transform: evaluate scores 1.0 only if it applies the same.
    own = answers(OWN)
    # The check can tell: the paper's transform answers otherwise on some image.
    assert (answers(EvalTransform((224, 224))) != own).any()
    root = tmp_path / "data"
    for label in range(10):
        (root / "train" / f"c{label}").mkdir(parents=True)
        blobs(root / "train" / f"c{label}" / "0.png", rng)
    for image, label in zip(images, own):
        (root / "test" / f"c{label}").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / "test" / f"c{label}")
    result = evaluate("S/32", weights=path, dataset=f"folder:{root}")
    assert result["images"] == len(images) and result["top1"] == 1.0, result


def test_tflite_calibration_and_sidecar_use_the_checkpoints_transform(repo, tmp_path, monkeypatch):
    path, _ = repo
    seen = []
    real = export_data.load_images

    def spy(source, transform, **kwargs):
        seen.append(transform)
        return real(source, transform, **kwargs)

    monkeypatch.setattr(export_data, "load_images", spy)
    model = keras_mixer.MixerS32(weights=path)
    report = export_tflite(model, str(tmp_path / "s32.tflite"), quantize="int8", num_samples=10)
    assert seen == [OWN]
    contract = metadata.read_contract(report["path"])
    assert contract["preprocessing"] == {"crop_fraction": 0.95, "interpolation": "bilinear"}
    assert metadata.contract_transform(contract) == OWN
    with open(report["sidecar"]) as f:
        assert json.load(f)["preprocessing"] == contract["preprocessing"]
