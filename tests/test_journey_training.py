"""Journey: train -> evaluate -> fine-tune from the run's own files -> export
every format -> verify -> run the exported file by its sidecar, as the README
and docs/training.md show it, through `keras-mixer` itself (cli.main).
"""

import json

import numpy as np
import pytest
from journeys import photo

from keras_mixer import cli
from keras_mixer.export import metadata
from keras_mixer.export.runtimes import open_runtime
from keras_mixer.inference import load_model
from keras_mixer.preprocessing import EvalTransform, load_image

QUICK = ["--epochs", "1"]


def run(*argv):
    assert cli.main([str(a) for a in argv]) == 0, argv


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`keras-mixer train --epochs 1 --output-dir r1`: the main job, one epoch."""
    out = tmp_path_factory.mktemp("runs") / "r1"
    run("train", *QUICK, "--output-dir", out)
    return out


def test_evaluate_then_fine_tune_from_the_runs_weights_and_model(first_run, tmp_path, capsys):
    run("evaluate", first_run / "model.keras")
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["images"] == 360
    for name in ("best.weights.h5", "model.keras"):  # both documented in docs/training.md
        out = tmp_path / name.split(".")[0]
        run("train", "--weights", first_run / name, *QUICK, "--output-dir", out)
        run_config = json.loads((out / "run_config.json").read_text())
        assert run_config["weights"] == str(first_run / name)
        assert_backbone_carried_over(first_run, out)


def test_fine_tune_the_run_on_other_classes_gets_a_new_head(first_run, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "shapes"
    for c in ("a", "b", "c"):
        (data / c).mkdir(parents=True)
        for i in range(24):
            photo(data / c / f"{i}.png", rng, size=(40, 36))
    out = tmp_path / "r3"
    run("train", "--weights", first_run / "model.keras", "--dataset", f"folder:{data}",
        "--batch-size", "16", *QUICK, "--output-dir", out)
    assert load_model(str(out / "model.keras")).output_shape == (None, 3)
    assert_backbone_carried_over(first_run, out)


def assert_backbone_carried_over(first_run, out):
    """The new run started from the first run's weights, not from a fresh init:
    one more epoch moves the stem, far less than another init differs."""
    before, after = (load_model(str(r / "model.keras")).get_layer("stem").kernel.numpy().ravel()
                     for r in (first_run, out))
    assert np.corrcoef(before, after)[0, 1] > 0.9


def test_export_every_format_verify_and_run_by_the_sidecar(first_run, tmp_path, capsys):
    model_path = first_run / "model.keras"
    out = tmp_path / "out"
    run("export", "tflite", model_path, "-o", out / "mixer.tflite", "--quantize", "int8")
    run("export", "saved-model", model_path, "-o", out / "serving", "--xla")
    run("export", "onnx", model_path, "-o", out / "mixer.onnx")
    run("export", "openvino", model_path, "-o", out / "mixer.xml")
    capsys.readouterr()
    model = load_model(str(model_path))
    image = photo(tmp_path / "digit.png", np.random.default_rng(1), size=(50, 41))
    want = model.predict(load_image(image, EvalTransform.of(model))[None], verbose=0)[0]
    for name in ("mixer.tflite", "mixer.onnx", "mixer.xml"):
        path = str(out / name)
        run("export", "verify", path, model_path, "--count", "50")
        report = json.loads(capsys.readouterr().out)
        # The command exits 1 on a file that misses its gate; the report says which gate.
        assert report["gate"]["passed"], (name, report)
        assert report["gate"]["kind"] == ("quantized" if name.endswith("tflite") else "float")
        assert report["top1_agreement"] >= report["gate"]["thresholds"]["top1_agreement"]
        # An app: read the sidecar, prepare the image as it says, run the file.
        contract = metadata.read_contract(path)
        transform = metadata.contract_transform(contract)
        assert transform == EvalTransform.of(model)
        got = open_runtime(path).predict(load_image(image, transform)[None])[0]
        if name.endswith("tflite"):  # int8: near-ties may flip, the values stay close
            assert np.max(np.abs(got - want)) < 0.05, name
        else:
            assert int(np.argmax(got)) == int(np.argmax(want)), name
            assert np.max(np.abs(got - want)) < 1e-4, name
