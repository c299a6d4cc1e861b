"""The Android demo's contract, checked from the export side.

The app (android_demo/) reads everything about a model from the sidecar
`<model>.json` that `keras-mixer export tflite` writes. These tests check
that (1) the .tflite file really has the shapes, dtypes, quantization
parameters and label count its sidecar states, for the float and integer
models the app switches between; (2) feeding the file the app's way (RGB
0-255, quantized with the sidecar's scale and zero point, output dequantized
the same way) gives the Keras model's answer; (3) the few things the app's
Kotlin code still fixes itself (the schema string, the crop fraction, the
dtype and kind names, the fields it reads) equal the exporter's, parsed out
of the Kotlin source rather than copied here; (4) the sidecars the JVM unit
tests use as fixtures are exactly what the exporter writes today.
"""

import json
import os
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from helpers import tiny_mixer

from keras_mixer.export import metadata
from keras_mixer.export.tflite import export_tflite
from keras_mixer import preprocessing
from keras_mixer.datasets import DIGITS_LABELS, embedded_digits

ANDROID = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "android_demo")
CORE = os.path.join(ANDROID, "app", "src", "main", "java", "com", "kerasmixer", "demo", "core")
FIXTURES = os.path.join(ANDROID, "app", "src", "test", "resources")
# The fixtures' model: the shared TINY config at 32x32 with the 10 digit classes.
SIZE = 32
# name -> (classifier activation, export options); the names are the fixtures'
# (contract_<name>.json). "int8" keeps float I/O: the app must take both kinds.
EXPORTS = {
    "float": ("softmax", dict(quantize="none")),
    "logits": (None, dict(quantize="none")),
    "int8_float_io": ("softmax", dict(quantize="int8")),
    "int8": ("softmax", dict(quantize="int8", io_dtype="int8")),
    "uint8": ("softmax", dict(quantize="int8", io_dtype="uint8")),
}
# Largest |probability difference| from Keras allowed per mode, on 20 digits
# through a tiny Mixer with a random head. Measured (TF 2.21): float32 3.6e-7;
# int8 0.024 (output step 1/256 plus int8 activations). A wrong parameter
# shows clearly: input zero point off by 8 gives 0.058, output scale x1.25
# gives 0.13 (measured by feeding/reading with those parameters perturbed).
TOLERANCE = {"float": 1e-5, "logits": 1e-5, "int8_float_io": 0.035, "int8": 0.035, "uint8": 0.035}


def kotlin(name):
    with open(os.path.join(CORE, name), encoding="utf-8") as f:
        return f.read()


def kotlin_const(source, name):
    """The value of `const val NAME = <string or number>` in Kotlin source."""
    match = re.search(rf"const val {name} = (.+)$", source, re.M)
    assert match, f"no 'const val {name}' in the app's source"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def digits_test():
    (_, _), (x_test, _) = embedded_digits(SIZE)
    return x_test[:20].astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_test):
    """name -> (.tflite path, sidecar dict, Keras model) for each of EXPORTS."""
    out = tmp_path_factory.mktemp("android")
    (x_train, _), _ = embedded_digits(SIZE)
    result = {}
    for name, (activation, options) in EXPORTS.items():
        keras.utils.set_random_seed(0)
        model = tiny_mixer(size=SIZE, classes=10, classifier_activation=activation,
                           name="tiny_mixer")
        _randomize_head(model)
        path = str(out / f"mixer_{name}.tflite")
        export_tflite(model, path, representative=x_train[:32], num_samples=32,
                      labels="digits", **options)
        result[name] = (path, metadata.read_contract(path), model)
    return result


def _randomize_head(model):
    # The head starts at zero (as in the paper), which makes every output the
    # same 1/10 whatever the input; random weights make the output depend on
    # the pixels, so a wrongly quantized input or output shows.
    head = model.get_layer("head")
    rng = np.random.default_rng(0)
    head.kernel.assign(rng.normal(0, 1.0, head.kernel.shape).astype("float32"))
    head.bias.assign(rng.normal(0, 0.5, head.bias.shape).astype("float32"))


def test_app_constants_equal_the_exporters():
    assert kotlin_const(kotlin("ModelContract.kt"), "FORMAT") == metadata.FORMAT
    assert kotlin_const(kotlin("InputEncoder.kt"), "CROP_FRACTION") == preprocessing.CROP_FRACTION


def test_app_knows_the_exporters_names_and_reads_every_field(exported):
    source = kotlin("ModelContract.kt")
    dtypes = re.findall(r'^\s*[A-Z0-9]+\("(\w+)", \d+, -?\d+, \d+\)', source, re.M)
    kinds = re.findall(r'^\s*[A-Z]+\("(\w+)"\)', source, re.M)
    assert tuple(dtypes) == metadata.DTYPES
    assert tuple(kinds) == metadata.OUTPUT_KINDS
    # Field names the parser asks for: obj.str("format"), q.int("zero_point"), ...
    read = set(re.findall(r'\.(?:str|obj|optObj|list|num|int)\("(\w+)"\)', source))

    def keys(value):
        if isinstance(value, dict):
            return set(value) | set().union(*(keys(v) for v in value.values()))
        return set()

    written = set().union(*(keys(contract) for _, contract, _ in exported.values()))
    assert read == written, (
        f"app reads but export does not write: {sorted(read - written)}; "
        f"export writes but app ignores: {sorted(written - read)}")


@pytest.mark.parametrize("name", list(EXPORTS))
def test_tflite_file_has_what_the_sidecar_says(exported, name):
    from ai_edge_litert.interpreter import Interpreter

    path, contract, _ = exported[name]
    interp = Interpreter(model_path=path)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    for detail, side in ((inp, contract["input"]), (out, contract["output"])):
        assert list(detail["shape"]) == side["shape"]
        assert np.dtype(detail["dtype"]).name == side["dtype"]
        scale, zero_point = detail["quantization"]
        if side["quantization"] is None:
            assert side["dtype"] == "float32" and scale == 0.0
        else:
            assert side["quantization"] == {"scale": scale, "zero_point": zero_point}
    assert contract["input"]["shape"] == [1, SIZE, SIZE, 3]
    assert contract["output"]["shape"] == [1, len(contract["labels"])]
    assert contract["labels"] == list(DIGITS_LABELS)
    integer_io = EXPORTS[name][1].get("io_dtype", "float32")
    assert contract["input"]["dtype"] == contract["output"]["dtype"] == integer_io
    assert contract["output"]["kind"] == ("logits" if name == "logits" else "probabilities")


@pytest.mark.parametrize("name", list(EXPORTS))
def test_fed_the_apps_way_the_file_gives_the_keras_answer(exported, digits_test, name):
    """Quantize RGB 0-255 with the sidecar's input parameters (round half to
    even, clamp), dequantize with its output parameters, softmax only logits:
    InputEncoder.kt and Scores.kt do exactly this."""
    from ai_edge_litert.interpreter import Interpreter

    path, contract, model = exported[name]
    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    got = []
    for image in digits_test:
        interp.set_tensor(inp["index"], _encode(image[None], contract["input"]))
        interp.invoke()
        got.append(_decode(interp.get_tensor(out["index"])[0], contract["output"]))
    want = np.asarray(model(digits_test))
    if contract["output"]["kind"] == "logits":
        want = np.exp(want - want.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
    # The answers differ between digits by far more than the tolerance (0.25 measured),
    # so a file that ignored its input could not pass.
    assert np.ptp(want, axis=0).max() > 5 * TOLERANCE[name]
    # Dequantized probabilities sum to 1 (so the app must not softmax them);
    # a wrong output scale would move the sum by as much as it is off.
    np.testing.assert_allclose(np.sum(got, -1), 1.0, atol=0.05)
    assert np.max(np.abs(np.asarray(got) - want)) <= TOLERANCE[name]


def _encode(pixels, spec):
    if spec["quantization"] is None:
        return pixels.astype(np.float32)
    q = spec["quantization"]
    info = np.iinfo(spec["dtype"])
    levels = np.rint(pixels / q["scale"] + q["zero_point"])
    return np.clip(levels, info.min, info.max).astype(spec["dtype"])


def _decode(values, spec):
    if spec["quantization"] is not None:
        q = spec["quantization"]
        values = (values.astype(np.float64) - q["zero_point"]) * q["scale"]
    values = np.asarray(values, np.float64)
    if spec["kind"] == "logits":
        values = np.exp(values - values.max())
        values /= values.sum()
    return values


@pytest.mark.parametrize("name", ["float", "logits", "int8", "uint8"])
def test_jvm_fixtures_are_what_the_exporter_writes(exported, name):
    fixture = os.path.join(FIXTURES, f"contract_{name}.json")
    on_disk = metadata.read_contract(fixture)  # still passes the exporter's schema check
    fresh = dict(exported[name][1])
    # The model name is free text; everything the app uses must match.
    on_disk.pop("model"), fresh.pop("model")
    assert on_disk == fresh, (
        f"{fixture} is stale: regenerate it as android_demo/README.md says")


@pytest.mark.skipif(not (shutil.which("kotlinc") and os.path.isfile("/usr/share/java/junit4.jar")),
                    reason="needs Debian's kotlin and junit4 (apt-get install kotlin junit4)")
def test_jvm_unit_tests_pass():
    run = subprocess.run([os.path.join(ANDROID, "scripts", "jvm_test.sh")],
                         capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0 and re.match(r"\d+ passed, 0 failed", summary), run.stdout + run.stderr
