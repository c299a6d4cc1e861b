"""The Android demo's contract, checked from the export side.

The app (android_demo/) reads everything about a model from the sidecar
`<model>.json` that `keras-mixer export tflite` writes. These tests check
that (1) the .tflite file really has the shapes, dtypes, quantization
parameters and label count its sidecar states, for the float and integer
models the app switches between; (2) feeding the file the app's way (RGB
0-255, quantized with the sidecar's scale and zero point, output dequantized
the same way) gives the Keras model's answer; (3) the few things the app's
Kotlin code still fixes itself (the schema string, the dtype, kind and
interpolation names, the fields it reads, the fallback resize for sidecars
without "preprocessing") equal the exporter's, parsed out of the Kotlin
source rather than copied here; (4) the sidecars the JVM unit tests use as
fixtures are exactly what the exporter writes today; (5) the app's resize
(core/Resize.kt) gives the pixels `preprocessing.eval_resize_crop` gives:
this file writes the golden values (resize_golden.json) that the JVM test
ResizeTest checks the Kotlin code against, and checks they are still what
TensorFlow gives.

`python tests/test_android_contract.py` rewrites resize_golden.json.
"""

import inspect
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
RESIZE_GOLDEN = os.path.join(FIXTURES, "resize_golden.json")
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


def kotlin_enum(source):
    """{ENTRY: "json name"} of the `ENTRY("name"),` lines of a Kotlin enum."""
    return dict(re.findall(r'^\s*([A-Z0-9]+)\("(\w+)"\)[,;]$', source, re.M))


def test_app_constants_equal_the_exporters():
    source = kotlin("ModelContract.kt")
    assert kotlin_const(source, "FORMAT") == metadata.FORMAT
    # A sidecar without "preprocessing" (written before it existed) gets the
    # paper's transform: eval_resize_crop's defaults.
    paper = inspect.signature(preprocessing.eval_resize_crop).parameters
    default = re.search(r"val DEFAULT = Preprocessing\(DEFAULT_CROP_FRACTION, Interpolation\.(\w+)\)",
                        source)
    assert default, "no 'val DEFAULT = Preprocessing(...)' in ModelContract.kt"
    assert kotlin_const(source, "DEFAULT_CROP_FRACTION") == paper["crop_fraction"].default
    assert kotlin_enum(kotlin("Resize.kt"))[default.group(1)] == paper["interpolation"].default


def test_app_resizes_with_the_sidecars_transform():
    assert tuple(kotlin_enum(kotlin("Resize.kt")).values()) == preprocessing.INTERPOLATIONS
    # The Android side (not compiled here) hands the contract's transform to core/Resize.kt.
    android = os.path.dirname(CORE)
    with open(os.path.join(android, "Images.kt"), encoding="utf-8") as f:
        images = f.read()
    with open(os.path.join(android, "Classifier.kt"), encoding="utf-8") as f:
        classifier = f.read()
    assert "Resize.resizeCrop(" in images and "createScaledBitmap" not in images
    assert "contract.preprocessing)" in classifier


def test_app_knows_the_exporters_names_and_reads_every_field(exported):
    source = kotlin("ModelContract.kt")
    dtypes = re.findall(r'^\s*[A-Z0-9]+\("(\w+)", \d+, -?\d+, \d+\)', source, re.M)
    kinds = re.findall(r'^\s*[A-Z]+\("(\w+)"\)', source, re.M)
    assert tuple(dtypes) == metadata.DTYPES
    assert tuple(kinds) == metadata.OUTPUT_KINDS
    # Field names the parser asks for: obj.str("format"), q.int("zero_point"), ...
    read = set(re.findall(r'\.(?:str|obj|optObj|list|num|int|field)\("(\w+)"\)', source))

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
    # The model name is free text; everything the app uses must match. The
    # model file's hash and size describe a file the fixtures do not keep.
    for field in ("model", "model_sha256", "model_bytes"):
        on_disk.pop(field, None), fresh.pop(field, None)
    assert on_disk == fresh, (
        f"{fixture} is stale: regenerate it as android_demo/README.md says")


def resize_golden():
    """Inputs and outputs of preprocessing.eval_resize_crop (TensorFlow's resize)
    for ResizeTest.kt: random pixels (they make a wrong tap, weight or border
    rule show, and bicubic overshoot reach the clipping), downscaled and
    upscaled, for a model of 8 x 6 (H x W: a swapped axis shows), both
    interpolations, the paper's crop and timm's 0.95; plus resized sizes on
    the edge of float32 rounding (in double, 36x35 at 0.9 gives 256, not 257)."""
    rng = np.random.default_rng(0)
    images = {"landscape": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
              "portrait": rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)}
    golden = {
        "about": "Written by tests/test_android_contract.py (run it as a script to rewrite): "
                 "keras_mixer.preprocessing.eval_resize_crop of these images; checked by ResizeTest.kt",
        "images": [{"name": name, "width": image.shape[1], "height": image.shape[0],
                    "rgb": image.reshape(-1).tolist()} for name, image in images.items()],
        "cases": [],
        "plans": [],
    }
    for name, image in images.items():
        for crop_fraction in (preprocessing.CROP_FRACTION, 0.95):
            for interpolation in preprocessing.INTERPOLATIONS:
                rgb = preprocessing.eval_resize_crop(image, (8, 6), crop_fraction, interpolation)
                golden["cases"].append({
                    "image": name, "height": 8, "width": 6, "crop_fraction": crop_fraction,
                    "interpolation": interpolation,
                    # Shortest text that reads back as the same float32.
                    "rgb": [float(np.format_float_positional(v)) for v in rgb.reshape(-1)]})
    for (src_w, src_h), (width, height), crop_fraction in [
            ((640, 480), (224, 224), 0.875), ((480, 640), (224, 224), 0.95),
            ((36, 35), (224, 224), 0.9), ((21, 16), (32, 32), 0.875), ((385, 384), (384, 384), 0.875),
            ((100, 50), (32, 32), 1.0), ((500, 333), (256, 192), 0.9)]:
        scaled_h, scaled_w = preprocessing._resized_shape((src_h, src_w), (height, width), crop_fraction)
        golden["plans"].append({"src": [src_w, src_h], "size": [width, height],
                                "crop_fraction": crop_fraction, "scaled": [scaled_w, scaled_h]})
    return golden


def _golden_text(golden):
    # One line per image, case and plan: readable diffs, and Json.kt reads it.
    parts = []
    for key, value in golden.items():
        if isinstance(value, list):
            value = "[\n  " + ",\n  ".join(json.dumps(item) for item in value) + "\n ]"
        else:
            value = json.dumps(value)
        parts.append(f" {json.dumps(key)}: {value}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def test_resize_golden_is_what_eval_resize_crop_gives():
    with open(RESIZE_GOLDEN, encoding="utf-8") as f:
        on_disk = json.load(f)
    fresh = json.loads(_golden_text(resize_golden()))
    stale = f"{RESIZE_GOLDEN} is stale: rewrite it with `python tests/test_android_contract.py`"
    assert [k for k in on_disk] == [k for k in fresh], stale
    assert on_disk["images"] == fresh["images"] and on_disk["plans"] == fresh["plans"], stale
    rgb = {}
    for disk, case in zip(on_disk["cases"], fresh["cases"], strict=True):
        assert {**disk, "rgb": None} == {**case, "rgb": None}, stale
        # Another TensorFlow may round the last bit differently.
        np.testing.assert_allclose(disk["rgb"], case["rgb"], rtol=0, atol=1e-4, err_msg=stale)
        rgb[case["image"], case["crop_fraction"], case["interpolation"]] = np.asarray(case["rgb"])
    # ResizeTest allows 1e-3 per value: each wrong choice of transform misses by far more.
    for image in ("landscape", "portrait"):
        for crop in (0.875, 0.95):
            assert np.abs(rgb[image, crop, "bicubic"] - rgb[image, crop, "bilinear"]).max() > 1
        for interpolation in preprocessing.INTERPOLATIONS:
            assert np.abs(rgb[image, 0.875, interpolation] - rgb[image, 0.95, interpolation]).max() > 1
    assert min(min(c["rgb"]) for c in fresh["cases"]) == 0.0  # bicubic overshoot got clipped
    assert max(max(c["rgb"]) for c in fresh["cases"]) == 255.0


@pytest.mark.skipif(not (shutil.which("kotlinc") and os.path.isfile("/usr/share/java/junit4.jar")),
                    reason="needs Debian's kotlin and junit4 (apt-get install kotlin junit4)")
def test_jvm_unit_tests_pass():
    run = subprocess.run([os.path.join(ANDROID, "scripts", "jvm_test.sh")],
                         capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0 and re.match(r"\d+ passed, 0 failed", summary), run.stdout + run.stderr


if __name__ == "__main__":
    with open(RESIZE_GOLDEN, "w", encoding="utf-8") as f:
        f.write(_golden_text(resize_golden()))
    print(f"wrote {RESIZE_GOLDEN}")
