"""The TFLite path on ARM64, the CPU of every phone: every export mode of the
digits model, converted here on x86, runs in an aarch64 Python with LiteRT
(under qemu user-mode emulation on an x86_64 machine) and gives x86 LiteRT's
answers and Keras' accuracy (the int8 bar: within a point of Keras on the
digits, for every mode). The Android demo's input path runs there too: the
sidecar's preprocessing (core/Resize.kt, ported to NumPy in
tests/arm64/runner.py) and its input encoding, against
`keras_mixer.preprocessing` on x86.

Correctness only: times under emulation say nothing about a phone.
Run with `python -m pytest -m arm64 tests/test_arm64.py` after building the
aarch64 environment with tests/arm64/setup.sh (docs/export.md#arm64);
without it every test here is skipped, naming that command.
"""

import dataclasses
import json
import os
import pwd
import shutil
import subprocess

import numpy as np
import pytest

from keras_mixer.export.runtimes import LiteModel
from keras_mixer.export.tflite import export_tflite
from keras_mixer.export.verify import _gate, agreement
from keras_mixer.preprocessing import EvalTransform

TESTS = os.path.dirname(os.path.abspath(__file__))
SETUP = "tests/arm64/setup.sh"
RUNNER = os.path.join(TESTS, "arm64", "runner.py")
# conftest.py points HOME into a sandbox: the environment's default is under
# the real home, as setup.sh (run outside pytest) puts it.
ROOT = os.environ.get("KERAS_MIXER_ARM64_ROOT") or os.path.join(
    pwd.getpwuid(os.getuid()).pw_dir, ".cache", "keras-mixer", "arm64")
LAUNCHER = os.path.join(ROOT, "python")
# Every ai-edge-litert that setup.sh finished installing (KERAS_MIXER_ARM64_LITERT).
VERSIONS = sorted(name[len("site-"):] for name in (os.listdir(ROOT) if os.path.isdir(ROOT) else ())
                  if name.startswith("site-")
                  and os.path.isfile(os.path.join(ROOT, name, ".complete")))
# Everything under qemu runs in one process per LiteRT version; generous for
# a 2-core machine shared with others.
TIMEOUT_S = 1200

pytestmark = [
    pytest.mark.arm64,
    pytest.mark.skipif(not (os.access(LAUNCHER, os.X_OK) and VERSIONS), reason=(
        f"no ARM64 environment at {ROOT} (KERAS_MIXER_ARM64_ROOT): build it with "
        f"`{SETUP}` (docs/export.md#arm64)")),
]

# Each mode of docs/export.md with each target that changes the file: "gpu"
# and "edgetpu" rebuild GELU in its sigmoid form, which the CPU runs too.
MODES = {
    "fp32": dict(quantize="none"),
    "fp32-gpu": dict(quantize="none", target="gpu"),
    "fp16": dict(quantize="float16"),
    "fp16-gpu": dict(quantize="float16", target="gpu"),
    "dynamic": dict(quantize="dynamic"),
    "int8": dict(quantize="int8"),
    "int8-layernorm": dict(quantize="int8", float_ops="layernorm"),
    "int8-uint8io": dict(quantize="int8", io_dtype="uint8"),
    "int8-int8io": dict(quantize="int8", io_dtype="int8"),
    "int8-edgetpu": dict(quantize="int8", target="edgetpu", io_dtype="uint8"),
}
# ARM64 against x86 LiteRT, same file and inputs. Float files (float16 and
# dynamic-range ones compute in float32): XNNPACK's kernels sum in another
# order per architecture, ~1e-6 on the probabilities (measured: <= 1.3e-5).
# Full-int8 files: the integer kernels differ too (their requantization
# rounds some values the other way: a third of the digits' outputs differ,
# by up to 17 of 256 probability steps where two classes are close), so
# ARM64 may differ from x86 by at most what the file already differs from
# Keras on x86, and gives the same answers.
X86_TOP1 = 0.99
X86_MAX_DIFF = {"none": 1e-4, "float16": 1e-4, "dynamic": 1e-4, "int8": None}
# The Android demo's resize (Resize.kt, in NumPy float32) against TensorFlow's:
# ResizeTest.kt's tolerance.
PIXEL_TOLERANCE = 1e-3
RAW_SIZES = ((23, 29), (40, 17))  # (h, w) of random raw images
APP_TRANSFORMS = ((0.875, "bicubic"), (0.95, "bilinear"))


@dataclasses.dataclass
class Exported:
    dir: str
    x: np.ndarray  # the digits test split, float32 RGB 0-255
    y: np.ndarray
    keras: np.ndarray  # Keras' outputs on x
    x86: dict  # mode -> x86 LiteRT outputs on x
    transform: EvalTransform


@pytest.fixture(scope="module")
def exported(digits_mixer, tmp_path_factory):
    """Every mode converted on x86, with Keras' and x86 LiteRT's outputs."""
    out = tmp_path_factory.mktemp("arm64")
    model = digits_mixer.model
    x, y = digits_mixer.x_test.astype(np.float32), digits_mixer.y_test
    x86 = {}
    for mode, options in MODES.items():
        path = str(out / f"{mode}.tflite")
        export_tflite(model, path, representative=digits_mixer.x_train[:200], **options)
        x86[mode] = LiteModel(path).predict(x)
    np.save(out / "x.npy", x)
    keras_out = np.asarray(model.predict(x, batch_size=64, verbose=0))
    return Exported(str(out), x, y, keras_out, x86, EvalTransform.of(model))


@pytest.fixture(scope="module")
def raw(exported, rng_module):
    """Random raw uint8 images (one array per size) and the digits as raw images."""
    images = {f"random{h}x{w}": rng_module.integers(0, 256, (6, h, w, 3), dtype=np.uint8)
              for h, w in RAW_SIZES}
    images["digits"] = exported.x.astype(np.uint8)  # 16x16: resized up, then cropped
    for name, array in images.items():
        np.save(os.path.join(exported.dir, f"raw-{name}.npy"), array)
    return images


@pytest.fixture(scope="module")
def rng_module():
    return np.random.default_rng(20)


def app_copy(exported, crop_fraction, interpolation):
    """The fp32 file in its own folder with a sidecar stating another transform."""
    folder = os.path.join(exported.dir, f"app-{interpolation}-{crop_fraction}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "fp32.tflite")
    shutil.copyfile(os.path.join(exported.dir, "fp32.tflite"), path)
    with open(os.path.join(exported.dir, "fp32.json"), encoding="utf-8") as f:
        contract = json.load(f)
    contract["preprocessing"] = {"crop_fraction": crop_fraction, "interpolation": interpolation}
    with open(os.path.join(folder, "fp32.json"), "w", encoding="utf-8") as f:
        json.dump(contract, f)
    return path


@pytest.fixture(scope="module")
def arm64(exported, raw):
    """Runs every job in the aarch64 Python, once per LiteRT version:
    {version: (report, {job name: outputs}, {job name: pixels})}."""
    jobs, names = [], []

    def job(name, model, inputs, raw_input=False):
        names.append(name)
        jobs.append({"model": model, "inputs": inputs, "raw": raw_input,
                     "outputs": os.path.join(exported.dir, f"out-{name}.npy"),
                     "pixels": os.path.join(exported.dir, f"pixels-{name}.npy") if raw_input else None})

    for mode in MODES:
        job(mode, os.path.join(exported.dir, f"{mode}.tflite"), os.path.join(exported.dir, "x.npy"))
    for mode in ("fp32", "int8-uint8io"):  # the app's whole path on the digits
        job(f"app-digits-{mode}", os.path.join(exported.dir, f"{mode}.tflite"),
            os.path.join(exported.dir, "raw-digits.npy"), raw_input=True)
    for crop, interpolation in APP_TRANSFORMS:
        model = app_copy(exported, crop, interpolation)
        for name in raw:
            if name.startswith("random"):
                job(f"app-{name}-{interpolation}-{crop}", model,
                    os.path.join(exported.dir, f"raw-{name}.npy"), raw_input=True)
    results = {}
    for version in VERSIONS:
        for spec in jobs:
            for key in ("outputs", "pixels"):
                if spec[key] and os.path.exists(spec[key]):
                    os.remove(spec[key])
        spec_path = os.path.join(exported.dir, "jobs.json")
        report_path = os.path.join(exported.dir, f"report-{version}.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump({"threads": 1, "jobs": jobs}, f)
        done = subprocess.run([LAUNCHER, "--litert", version, RUNNER, spec_path, report_path],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        hint = ("; under qemu before 8.1, LiteRT 2.x crashes so at its first Interpreter "
                "(docs/export.md#arm64)") if done.returncode in (-11, 139) else ""
        assert done.returncode == 0, (
            f"the aarch64 runner (ai-edge-litert {version}) exited {done.returncode}{hint}:\n"
            f"{done.stderr[-3000:]}")
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        outputs = {n: np.load(j["outputs"], allow_pickle=False) for n, j in zip(names, jobs)}
        pixels = {n: np.load(j["pixels"], allow_pickle=False)
                  for n, j in zip(names, jobs) if j["pixels"]}
        results[version] = (report, outputs, pixels)
    return results


# The per-mode figures, printed by test_summary (run with -s to see them).
RESULTS = {}


@pytest.mark.parametrize("version", VERSIONS)
def test_runs_on_aarch64_with_the_sidecars_tensors(arm64, exported, version):
    report, _, _ = arm64[version]
    assert report["machine"] == "aarch64" and report["litert"] == version
    # The interpreter on ARM64 reads the tensors the sidecar (written on x86) states.
    for mode in MODES:
        job = next(j for j in report["jobs"] if j["model"] == f"{mode}.tflite")
        with open(os.path.join(exported.dir, f"{mode}.json"), encoding="utf-8") as f:
            contract = json.load(f)
        for side in ("input", "output"):
            want = {k: contract[side][k] for k in ("shape", "dtype", "quantization")}
            assert job[side] == want, (mode, side)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", VERSIONS)
def test_mode_gives_x86_answers_and_keras_accuracy(arm64, exported, version, mode):
    _, outputs, _ = arm64[version]
    got, x86, quantize = outputs[mode], exported.x86[mode], MODES[mode]["quantize"]
    vs_x86 = agreement(x86, got)
    vs_keras = agreement(exported.keras, got)
    report = {"images": len(got), **vs_keras,
              "keras_accuracy": float(np.mean(exported.keras.argmax(-1) == exported.y)),
              "tflite_accuracy": float(np.mean(got.argmax(-1) == exported.y))}
    kind = {"none": "float", "float16": "float16"}.get(quantize, "quantized")
    gate = _gate(report, "tflite_accuracy", kind, None)
    x86_error = agreement(exported.keras, x86)["max_abs_error"]
    RESULTS[version, mode] = {
        "top1_vs_x86": vs_x86["top1_agreement"], "max_diff_vs_x86": vs_x86["max_abs_error"],
        "images_differing_from_x86": int(np.sum(np.any(got != x86, axis=-1))),
        "x86_max_diff_vs_keras": x86_error,
        "top1_vs_keras": vs_keras["top1_agreement"], "max_diff_vs_keras": vs_keras["max_abs_error"],
        "accuracy_arm64": report["tflite_accuracy"],
        "accuracy_x86": float(np.mean(x86.argmax(-1) == exported.y)),
        "accuracy_keras": report["keras_accuracy"]}
    assert vs_x86["top1_agreement"] >= X86_TOP1, RESULTS[version, mode]
    assert vs_x86["max_abs_error"] <= (X86_MAX_DIFF[quantize] or x86_error), RESULTS[version, mode]
    # verify's gate for this kind of file, int8's bar (a point of accuracy) included.
    assert gate["passed"], (gate["failures"], RESULTS[version, mode])


@pytest.mark.parametrize("version", VERSIONS)
def test_app_resize_on_arm64_gives_keras_mixers_pixels(arm64, exported, raw, version):
    """Resize.kt's algorithm, run on ARM64, against eval_resize_crop on x86."""
    _, outputs, pixels = arm64[version]
    size = exported.transform.size
    for crop, interpolation in APP_TRANSFORMS:
        transform = EvalTransform(size, crop_fraction=crop, interpolation=interpolation)
        for name, images in raw.items():
            if not name.startswith("random"):
                continue
            job = f"app-{name}-{interpolation}-{crop}"
            want = np.stack([transform(image) for image in images])
            diff = float(np.max(np.abs(pixels[job] - want)))
            RESULTS[version, job] = {"max_pixel_diff": diff}
            assert diff <= PIXEL_TOLERANCE, (job, diff)
            # And the model on them, fed as the sidecar says: x86 LiteRT's outputs.
            x86 = LiteModel(os.path.join(exported.dir, "fp32.tflite")).predict(want)
            assert agreement(x86, outputs[job])["max_abs_error"] <= X86_MAX_DIFF["none"]


@pytest.mark.parametrize("mode", ["fp32", "int8-uint8io"])
@pytest.mark.parametrize("version", VERSIONS)
def test_app_path_on_arm64_gives_keras_answers(arm64, exported, digits_mixer, version, mode):
    """Raw digits -> the sidecar's resize and crop -> its input encoding -> the
    .tflite, all on ARM64, against Keras on keras_mixer's preprocessing on x86."""
    _, outputs, pixels = arm64[version]
    job = f"app-digits-{mode}"
    want_pixels = np.stack([exported.transform(image) for image in exported.x.astype(np.uint8)])
    assert float(np.max(np.abs(pixels[job] - want_pixels))) <= PIXEL_TOLERANCE
    keras_out = np.asarray(digits_mixer.model.predict(want_pixels, batch_size=64, verbose=0))
    got = outputs[job]
    result = agreement(keras_out, got)
    report = {"images": len(got), **result,
              "keras_accuracy": float(np.mean(keras_out.argmax(-1) == exported.y)),
              "tflite_accuracy": float(np.mean(got.argmax(-1) == exported.y))}
    RESULTS[version, job] = {"top1_vs_keras": result["top1_agreement"],
                             "max_diff_vs_keras": result["max_abs_error"],
                             "accuracy_arm64": report["tflite_accuracy"],
                             "accuracy_keras": report["keras_accuracy"]}
    kind = "float" if mode == "fp32" else "quantized"
    gate = _gate(report, "tflite_accuracy", kind, None)
    assert gate["passed"], (gate["failures"], RESULTS[version, job])


def test_summary():
    """Prints what the tests above measured (pytest -s shows it)."""
    if not RESULTS:
        pytest.skip("no ARM64 results in this run")
    print("\nARM64 (qemu; correctness only, times under emulation mean nothing)")
    for (version, name), values in sorted(RESULTS.items()):
        figures = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"  litert {version} {name}: {figures}")
