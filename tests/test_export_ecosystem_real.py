"""Issue 21's done-when, as users run it (-m timm; needs PyTorch and timm, see
tests/test_export_timm_real.py for KERAS_MIXER_TIMM_PYTHON):

    keras-mixer train --model S/32 --image-size 224 ... -o RUN      (the digits, 10 classes)
    keras-mixer export timm RUN/model.keras -o TIMM_DIR             -> real timm
    keras-mixer export keras-hub RUN/model.keras -o HUB_DIR         -> keras_hub.from_preset

and a 1000-class B/16 (random weights: no checkpoint can be fetched offline)
through both. timm gets the digits test images at 224 normalized with the
config's mean/std, keras-hub the raw 8x8-derived images at another size (its
converter resizes and crops as keras-mixer does). -s prints the numbers.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_mixer
from keras_mixer import cli, preprocessing
from keras_mixer.datasets import embedded_digits
from test_export_timm import randomize
from test_export_timm_real import relative, run_timm, timm_python  # noqa: F401 (fixture)

pytestmark = pytest.mark.timm
pytest.importorskip("keras_hub")


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def keras_hub_outputs(preset, raw, tmp_path):
    np.save(tmp_path / "raw.npy", raw)
    code = textwrap.dedent(f"""
        import keras_hub, keras_mixer, numpy as np
        classifier = keras_hub.models.ImageClassifier.from_preset({str(preset)!r})
        np.save({str(tmp_path / "hub.npy")!r},
                classifier.predict(np.load({str(tmp_path / "raw.npy")!r}), verbose=0))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(tmp_path / "hub.npy")


def both_ways_out(model_arg, model, tmp_path, timm_python, name, images, raw, labels=None):
    """Exports model_arg to timm and keras-hub by the CLI, opens both with the
    other library, returns the numbers (and asserts them)."""
    assert cli.main(["export", "timm", model_arg, "-o", str(tmp_path / "timm")]) == 0
    assert cli.main(["export", "keras-hub", model_arg, "-o", str(tmp_path / "hub")]) == 0
    transform = preprocessing.EvalTransform.of(model)
    x = np.stack([preprocessing.eval_resize_crop(image, transform.size, transform.crop_fraction,
                                                 transform.interpolation) for image in images])
    expected = model.predict(x.astype(np.float32), verbose=0)
    probabilities = bool(np.allclose(expected.sum(-1), 1.0, atol=1e-4)) and expected.min() >= 0
    outputs, report = run_timm(timm_python, tmp_path / "timm", x.astype(np.float32), tmp_path)
    gelu = model.get_layer("MixerBlock_0").gelu_form
    timm_logits = outputs["tanh" if gelu == "tanh" else "local_dir"]
    timm_out = softmax(timm_logits) if probabilities else timm_logits
    hub = keras_hub_outputs(tmp_path / "hub", raw, tmp_path)
    direct = model.predict(np.stack([
        preprocessing.eval_resize_crop(image, transform.size, transform.crop_fraction,
                                       transform.interpolation) for image in raw]
    ).astype(np.float32), verbose=0)
    numbers = {
        "timm": report["timm"], "torch": report["torch"], "gelu": gelu,
        "timm_relative": relative(expected, timm_out),
        "timm_top1_agreement": float(np.mean(expected.argmax(-1) == timm_out.argmax(-1))),
        "keras_hub_max_abs": float(np.max(np.abs(hub - direct))),
        "keras_hub_top1_agreement": float(np.mean(hub.argmax(-1) == direct.argmax(-1))),
    }
    if labels is not None:
        numbers["keras_top1"] = float(np.mean(expected.argmax(-1) == labels))
        numbers["timm_top1"] = float(np.mean(timm_out.argmax(-1) == labels))
    print(f"\n{name}: " + json.dumps(numbers))
    assert numbers["timm_relative"] <= 1e-4, numbers
    assert numbers["timm_top1_agreement"] == 1.0, numbers
    np.testing.assert_allclose(hub, direct, atol=1e-5, rtol=0)
    return numbers


def test_s32_trained_on_the_digits_opens_in_timm_and_keras_hub(tmp_path, timm_python):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "S/32", "--image-size", "224", "--epochs", "2",
                     "--batch-size", "32", "--learning-rate", "1e-3", "--output-dir",
                     str(run)]) == 0
    model = keras_mixer.load_model(str(run / "model.keras"))
    assert model.output_shape == (None, 10)
    (_, _), (x_test, y_test) = embedded_digits(224)
    (_, _), (raw, _) = embedded_digits(96)  # raw images of another size, for keras-hub
    numbers = both_ways_out(str(run / "model.keras"), model, tmp_path, timm_python,
                            "S/32, 10 classes, trained on the digits", x_test, raw[:64],
                            labels=y_test)
    assert numbers["keras_top1"] > 0.5, numbers  # it did learn the digits
    assert numbers["timm_top1"] == numbers["keras_top1"], numbers


def test_b16_at_1000_classes_opens_in_timm_and_keras_hub(tmp_path, timm_python):
    model = randomize(keras_mixer.MixerB16(classifier_activation=None))
    model.save(tmp_path / "b16.keras")
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (4, 224, 224, 3)).astype(np.uint8)
    raw = rng.uniform(0, 255, (2, 300, 260, 3)).astype(np.uint8)
    both_ways_out(str(tmp_path / "b16.keras"), model, tmp_path, timm_python,
                  "B/16, 1000 classes, random weights", images, raw)
