"""ONNX and OpenVINO export: float32 files that give the Keras answer in their own
runtimes (ONNX Runtime, OpenVINO) to 1e-4, a sidecar whose tensor names and
shapes are the file's, `export verify` for each format, atomic refusal when a
runtime disagrees, and bad input refused with a message."""

import json

import keras
import numpy as np
import pytest

from helpers import TINY, TINY_SIZE, images
from keras_mixer import cli
from keras_mixer.export import metadata, runtimes, servers
from keras_mixer.export.servers import export_onnx, export_openvino
from keras_mixer.export.verify import verify
from keras_mixer.model import Mixer

EXPORTERS = {"onnx": (export_onnx, ".onnx"), "openvino": (export_openvino, ".xml")}
# One output kind per format keeps the module quick; both kinds are covered.
ACTIVATIONS = {"onnx": "softmax", "openvino": None}


def _tiny(activation="softmax"):
    """A TINY Mixer with a random head (the zero-initialised one gives every
    image the same uniform answer, which any file would match)."""
    keras.utils.set_random_seed(1)
    model = Mixer(TINY, input_shape=(TINY_SIZE, TINY_SIZE, 3), classes=7,
                  classifier_activation=activation)
    head = model.get_layer("head")
    rng = np.random.default_rng(3)
    head.kernel.assign(rng.normal(0, 1.0, head.kernel.shape).astype("float32"))
    head.bias.assign(rng.normal(0, 0.5, head.bias.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{format: (path, report, model)}."""
    out = tmp_path_factory.mktemp("servers")
    result = {}
    for name, (export, suffix) in EXPORTERS.items():
        model = _tiny(ACTIVATIONS[name])
        path = str(out / f"{name}{suffix}")
        result[name] = path, export(model, path), model
    return result


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_float32_matches_keras_in_its_runtime(exported, rng, name):
    path, report, model = exported[name]
    x = images(rng, 24)
    result = verify(path, model, images=x, count=len(x))
    assert result["runtime"] == {"onnx": "onnxruntime", "openvino": "openvino"}[name]
    assert result["max_abs_error"] < 1e-4 and result["top1_agreement"] == 1.0
    # The export's own check ran in the runtime too (on probabilities).
    assert report["check"]["max_abs_error"] < 1e-4 and report["check"]["top1_agreement"] == 1.0
    spread = np.ptp(model.predict(x, verbose=0), axis=0).max()
    assert spread > 0.05  # the model really tells images apart


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_sidecar_names_the_files_tensors_and_batches_are_dynamic(exported, rng, name):
    path, report, model = exported[name]
    contract = metadata.read_contract(path)
    assert contract == report["contract"]
    assert contract["format"] == f"keras-mixer-{name}/1"
    assert contract["input"]["shape"] == [None, TINY_SIZE, TINY_SIZE, 3]
    assert contract["output"]["shape"] == [None, 7]
    assert contract["output"]["kind"] == ("logits" if ACTIVATIONS[name] is None else "probabilities")
    assert contract["input"]["range"] == [0, 255] and contract["input"]["color"] == "RGB"
    # Fed by the sidecar's names, straight through each runtime's own API, a batch of 5.
    x = images(rng, 5)
    if name == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run([contract["output"]["name"]], {contract["input"]["name"]: x})[0]
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled({contract["input"]["name"]: x})[contract["output"]["name"]]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4, rtol=0)


def test_openvino_default_precision_runs_and_reports_it(exported, rng):
    path, _, model = exported["openvino"]
    lowered = runtimes.open_runtime(path, precision="default")
    assert lowered.inference_precision in ("f32", "bf16", "f16")
    x = images(rng, 8)
    got = lowered.predict(x)
    assert got.shape == (8, 7)
    # bfloat16 (where the CPU picks it) keeps ~3 significant digits.
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=0.05, rtol=0)


def test_a_runtime_that_disagrees_writes_nothing(tmp_path, monkeypatch):
    real = servers.open_runtime

    class Off:  # the real ONNX Runtime model, its answers moved by 0.01
        def __init__(self, path, **kwargs):
            self.inner = real(path, **kwargs)
            self.runtime = self.inner.runtime

        def predict(self, x):
            return self.inner.predict(x) + 0.01

    monkeypatch.setattr(servers, "open_runtime", Off)
    with pytest.raises(ValueError, match=r"tolerance: onnxruntime differs from Keras by 0.01"):
        export_onnx(_tiny(), str(tmp_path / "m.onnx"))
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_exports_and_verifies(tmp_path, exported, capsys):
    model = str(tmp_path / "tiny.keras")
    _tiny().save(model)
    out = str(tmp_path / "m.onnx")
    assert cli.main(["export", "onnx", model, "-o", out, "--labels", "digits"]) == 2
    assert "labels: the model has 7 classes; got 10 labels" in capsys.readouterr().err
    assert cli.main(["export", "onnx", model, "-o", out]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "top-1 agreement 1.000" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json", "tiny.keras"]
    # verify takes every format; the OpenVINO file is the fixture's.
    openvino_path, _, openvino_model = exported["openvino"]
    openvino_model.save(str(tmp_path / "ov.keras"))
    for path, keras_file in ((out, model), (openvino_path, str(tmp_path / "ov.keras"))):
        assert cli.main(["export", "verify", path, keras_file, "-n", "12"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["images"] == 12 and report["max_abs_error"] < 1e-4


def test_bad_input_is_refused_with_a_message(tmp_path, exported):
    model = _tiny()
    cases = [
        (export_onnx, dict(output=str(tmp_path / "m.tflite")), r"output: expected a path ending in .onnx; got '.*m.tflite'"),
        (export_openvino, dict(output=str(tmp_path / "m.onnx")), r"output: expected a path ending in .xml; got '.*m.onnx'"),
        (export_onnx, dict(output=str(tmp_path / "m.onnx"), opset=7), r"opset: expected None or an int >= 13; got 7"),
        (export_onnx, dict(output=str(tmp_path / "m.onnx"), tolerance=0), r"tolerance: expected None or a number > 0; got 0"),
        (export_openvino, dict(output=str(tmp_path / "m.xml"), num_threads=0), r"num_threads: expected an int >= 1; got 0"),
    ]
    for export, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export(model, **kwargs)
    (tmp_path / "m.bin").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"output: '.*m.bin' exists; pass --overwrite"):
        export_openvino(model, str(tmp_path / "m.xml"))
    path = exported["onnx"][0]
    with pytest.raises(ValueError, match=r"precision: only OpenVINO files take 'default'; got '.*onnx'"):
        verify(path, model, images=images(np.random.default_rng(0), 2), precision="default")
    with pytest.raises(ValueError, match=r"precision: expected one of \('float32', 'default'\); got 'bf16'"):
        runtimes.open_runtime(path, precision="bf16")
    with pytest.raises(ValueError, match=r"path: expected a file ending in .tflite or .onnx or .xml; got 'm.pb'"):
        runtimes.open_runtime("m.pb")


def test_read_contract_checks_the_server_schema(tmp_path, exported):
    contract = dict(exported["onnx"][1]["contract"])
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**contract, "input": {**contract["input"], "shape": [1, 16, 16, 3]}}))
    with pytest.raises(ValueError, match=r"metadata input.shape: expected \[null, H, W, 3\]; got \[1, 16, 16, 3\]"):
        metadata.read_contract(str(path))
    path.write_text(json.dumps({**contract, "output": {**contract["output"], "name": ""}}))
    with pytest.raises(ValueError, match=r"metadata output.name: expected the tensor's name in the runtime; got ''"):
        metadata.read_contract(str(path))
    path.write_text(json.dumps({**contract, "format": "keras-mixer-onnx/2"}))
    with pytest.raises(ValueError, match=r"metadata format: expected \[.*'keras-mixer-onnx/1'.*\]; got 'keras-mixer-onnx/2'"):
        metadata.read_contract(str(path))
