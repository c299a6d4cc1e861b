"""Journey: a checkpoint's own preprocessing reaches every consumer.

A timm-layout repository whose config says crop_pct 0.95, bilinear, ImageNet
mean/std (not the authors' 0.875, bicubic, 0.5/0.5) -> predict, evaluate,
TFLite int8 export (calibration and sidecar), SavedModel image-bytes
signature: each applies the same transform, read from the model.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import timm_reference
from journeys import S32, photo

import keras_mixer
from keras_mixer.datasets import embedded_digits
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


def test_evaluate_uses_the_checkpoints_transform(repo):
    path, _ = repo
    result = evaluate("S/32", weights=path, dataset="default")
    model = keras_mixer.MixerS32(weights=path)
    _, (x_test, y_test) = embedded_digits(224)

    def accuracy(transform):
        x = np.stack([transform(image) for image in x_test])
        return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y_test))

    expected = accuracy(OWN)
    # The check can tell: with the paper's transform this model scores otherwise.
    assert accuracy(EvalTransform((224, 224))) != pytest.approx(expected, abs=1e-6)
    assert result["images"] == len(y_test) and result["top1"] == pytest.approx(expected, abs=1e-6)


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
