"""Server int8: `export onnx --quantize int8` (ONNX Runtime static QDQ int8),
calibrated like TFLite int8 and refused unless it passes `export verify`'s int8
gate in ONNX Runtime. The accuracy is recomputed here from ONNX Runtime and
Keras on the digits test split, not read from the export's report."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from keras_mixer import cli
from keras_mixer.export import metadata
from keras_mixer.export.servers import export_onnx
from keras_mixer.export.verify import GATES, verify
from test_export_onnx_openvino import _tiny


def _int8_weights(path):
    """Names of the int8 initializers (QDQ keeps weights int8 in the file)."""
    graph = onnx.load(path).graph
    return [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]


def test_int8_on_the_digits_keeps_keras_accuracy(tmp_path, digits_mixer):
    out = str(tmp_path / "int8.onnx")
    report = export_onnx(digits_mixer.model, out, quantize="int8",
                         representative=digits_mixer.x_train[:200])
    assert report["verify"]["gate"] == {**report["verify"]["gate"], "kind": "quantized",
                                        "passed": True}
    assert metadata.read_contract(out)["quantize"] == "int8"
    assert len(_int8_weights(out)) >= 4  # token/channel MLPs and the head
    # Independently: every test image through ONNX Runtime and through Keras.
    x, y = digits_mixer.x_test.astype(np.float32), digits_mixer.y_test
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    keras_accuracy = np.mean(digits_mixer.model.predict(x, verbose=0).argmax(-1) == y)
    assert keras_accuracy > 0.8  # a trained model, or the comparison says nothing
    assert np.mean(got.argmax(-1) == y) >= keras_accuracy - 0.01
    # The file verify reads is gated as int8 (not the float bar of 1e-3).
    again = verify(out, digits_mixer.model, count=20)
    assert again["gate"]["kind"] == "quantized" and again["gate"]["passed"]


def test_cli_int8_gate_refuses_and_no_gate_writes(tmp_path, capsys, monkeypatch):
    model = str(tmp_path / "tiny.keras")
    _tiny().save(model)
    out = tmp_path / "m.onnx"
    # A gate no file can pass (top-1 agreement above 1): refused, nothing written.
    monkeypatch.setitem(GATES, "quantized",
                        {**GATES["quantized"], "top1_agreement": 1.01})
    argv = ["export", "onnx", model, "-o", str(out), "--quantize", "int8",
            "--num-samples", "20"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "export onnx: FAILED, nothing written" in captured.err
    assert "top-1 agreement" in captured.err and json.loads(captured.out)["images"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.keras"]
    assert cli.main(argv + ["--no-gate"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "FAILED (--no-gate)" in printed
    assert json.loads((tmp_path / "m.onnx.json").read_text())["quantize"] == "int8"
    assert _int8_weights(str(out))


def test_int8_options_are_checked_first(tmp_path):
    model, out = _tiny(), str(tmp_path / "m.onnx")
    cases = [
        (dict(quantize="int4"), r"quantize: expected one of \('none', 'int8'\); got 'int4'"),
        (dict(quantize="int8", num_samples=5), r"num_samples: expected an int >= 10; got 5"),
        (dict(quantize="int8", gate="no"), r"gate: expected True or False; got 'no'"),
        (dict(quantize="int8", representative="folder:" + str(tmp_path / "none")),
         r"representative: .*none"),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            export_onnx(model, out, **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == []
