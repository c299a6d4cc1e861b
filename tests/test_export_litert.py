"""The LiteRT side beyond export_tflite's modes (one-partition int8:
test_export_int8.py): LiteRT Quantizer recipes on a float .tflite (accuracy on
the digits, per-layer errors, where XNNPACK runs them), conversion in a child
process, `--target gpu` refusing ops the GPU path lacks, and per-target residency."""

import numpy as np
import pytest

from keras_mixer import cli
from keras_mixer.export import metadata, targets
from keras_mixer.export.quantizer import RECIPES, quantize_tflite
from keras_mixer.export.tflite import convert, export_tflite
from keras_mixer.export.verify import verify


@pytest.fixture(scope="module")
def digits(digits_mixer, tmp_path_factory):
    """(the shared digits Mixer, its float .tflite, x_train, (x_test, y_test))."""
    path = str(tmp_path_factory.mktemp("litert") / "fp32.tflite")
    export_tflite(digits_mixer.model, path, labels="digits")
    return (digits_mixer.model, path, digits_mixer.x_train,
            (digits_mixer.x_test, digits_mixer.y_test))


@pytest.mark.parametrize("recipe", ["dynamic", "w8a8", "w8a16"])
def test_quantizer_recipes_keep_accuracy_and_report_layer_errors(tmp_path, digits, recipe):
    model, float_path, x_train, held_out = digits
    out = str(tmp_path / f"{recipe}.tflite")
    # Calibrated on the default 200 images: with 100, w8a8 lost 1.1 points here.
    report = quantize_tflite(float_path, out, recipe=recipe, representative=x_train,
                             held_out=held_out[0][:16])
    result = verify(out, model, images=held_out, count=len(held_out[0]))
    assert result["keras_accuracy"] > 0.9
    assert result["tflite_accuracy"] >= result["keras_accuracy"] - 0.01
    activations = {"dynamic": "float32", "w8a8": "int8", "w8a16": "int16"}[recipe]
    assert f"FULLY_CONNECTED({activations})" in report["ops"]
    # The quantizer's own metrics: the output close to the float file's, and
    # the worst layers named, lowest SNR first.
    assert report["output_error"]["cosine"] > 0.95 and report["output_error"]["snr_db"] > 10
    snrs = [w["snr_db"] for w in report["worst_layers"]]
    assert len(snrs) == 5 and snrs == sorted(snrs) and all(np.isfinite(snrs))
    # Where XNNPACK runs it: dynamic whole; int16 activations not (NPUs only).
    if recipe == "dynamic":
        assert report["xnnpack"] == {"partitions": 1, "whole_graph": True}
    if recipe == "w8a16":
        assert report["xnnpack"]["whole_graph"] is False
    contract = metadata.read_contract(out)
    assert contract["labels"] == list("0123456789")
    assert contract["input"]["dtype"] == contract["output"]["dtype"] == "float32"
    assert contract["quantize"] == RECIPES[recipe]


def test_quantizer_float_ops_and_errors(tmp_path, digits):
    _, float_path, x_train, _ = digits
    report = quantize_tflite(float_path, str(tmp_path / "q.tflite"), recipe="w8a8",
                             representative=x_train[:20], num_samples=20, float_ops="RSQRT")
    assert "RSQRT(float32)" in report["ops"] and "RSQRT(int8)" not in report["ops"]
    cases = [
        (dict(recipe="w4"), r"recipe: expected one of \['dynamic', 'w8a8', 'w8a16'\]; got 'w4'"),
        (dict(float_ops="NOPE"), r"float_ops: expected op names .*; got 'NOPE'"),
        (dict(representative=x_train[:5]), r"representative: expected at least 10 images .*got 5"),
        (dict(held_out=x_train[:2, :8]), r"held_out: expected images of shape \(N, 16, 16, 3\); got \(2, 8, 16, 3\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            quantize_tflite(float_path, str(tmp_path / "bad.tflite"),
                            **{"representative": x_train[:20], **kwargs})
    with pytest.raises(ValueError, match=r"float_tflite: expected a float .tflite .*quantize 'static_wi8_ai8'"):
        quantize_tflite(str(tmp_path / "q.tflite"), str(tmp_path / "bad.tflite"),
                        representative=x_train[:20])
    with pytest.raises(FileNotFoundError, match=r"float_tflite: no such file: 'nope.tflite'"):
        quantize_tflite("nope.tflite", str(tmp_path / "bad.tflite"))
    assert not (tmp_path / "bad.tflite").exists()


def test_cli_quantize(tmp_path, digits, capsys):
    _, float_path, _, _ = digits
    out = str(tmp_path / "w8a16.tflite")
    assert cli.main(["export", "quantize", float_path, "-o", out, "--recipe", "w8a16",
                     "--num-samples", "20"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "recipe w8a16" in printed and "lowest-SNR layers" in printed


def test_conversion_in_a_child_process_gives_the_same_graph(digits):
    model, _, x_train, _ = digits
    from keras_mixer.export.rebuild import rebuild_for_target

    net = rebuild_for_target(model, "cpu", "int8")
    options = dict(quantize="int8", images=x_train[:10].astype(np.float32),
                   float_ops=("SOFTMAX", "RSQRT"))  # as export_tflite sets them
    isolated = convert(net, isolate=True, **options)  # calibration images cross by .npy
    assert targets.op_counts(targets.model_ops(isolated)) == targets.op_counts(
        targets.model_ops(convert(net, **options)))
    assert targets.xnnpack_partitions(isolated) == {"partitions": 1, "whole_graph": True}
    # The child's error comes back with its last line.
    with pytest.raises(RuntimeError, match=r"conversion failed in its child process .*NoneType"):
        convert(net, quantize="int8", images=None, isolate=True)


def test_gpu_target_refuses_ops_the_gpu_path_lacks(tmp_path, digits, monkeypatch):
    model, _, _, _ = digits
    report = export_tflite(model, str(tmp_path / "gpu.tflite"), target="gpu")
    assert report["residency"]["gpu"] == {"ops": 1.0, "unsupported": []}
    # Without LOGISTIC (the sigmoid GELU's) in the table, the GPU export must refuse.
    monkeypatch.setitem(targets.SUPPORTED_OPS, "gpu", targets.GPU_OPS - {"LOGISTIC"})
    with pytest.raises(ValueError, match=r"target: the LiteRT GPU path cannot run LOGISTIC .*got target='gpu'"):
        export_tflite(model, str(tmp_path / "refused.tflite"), target="gpu")
    assert not (tmp_path / "refused.tflite").exists() and not (tmp_path / "refused.json").exists()


def test_residency_counts_ops_per_target():
    ops = [{"op": "FULLY_CONNECTED", "dtype": "int8"}, {"op": "GELU", "dtype": "float32"},
           {"op": "RSQRT", "dtype": "float32"}, {"op": "SOFTMAX", "dtype": "float32"}]
    got = targets.residency(ops)
    assert got["cpu"] == {"ops": 1.0, "unsupported": []}
    assert got["gpu"] == {"ops": 0.75, "unsupported": ["GELU"]}
    assert got["edgetpu"]["ops"] == 0.25  # float ops run on the host
    assert len(got["edgetpu"]["unsupported"]) == 3
