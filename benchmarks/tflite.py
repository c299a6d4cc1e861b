"""TFLite per quantization mode: size, latency, accuracy.

File size, XNNPACK partitions, batch-1 latency in LiteRT (XNNPACK; 1 and 2
threads, interleaved), and accuracy on the embedded digits test split, Keras
against each .tflite.
"""

import os
import tempfile
import time

from . import harness

# "int8+float-ln" is int8 with the LayerNorm statistics kept in float.
MODES = {"fp32": dict(quantize="none"), "fp16": dict(quantize="float16"),
         "dynamic": dict(quantize="dynamic"), "int8": dict(quantize="int8"),
         "int8+float-ln": dict(quantize="int8", float_ops="layernorm")}
# Latency: random-init weights (size and speed do not depend on the values),
# int8 calibrated on embedded digits images resized to the model's size.
FULL = dict(variants=("S/16", "B/16"), size=224, threads=(1, 2), rounds=9, calibration=64,
            digits_model=dict(num_blocks=4, patch_size=4, hidden_dim=64, tokens_mlp_dim=32,
                              channels_mlp_dim=128), digits_epochs=15)
QUICK = dict(variants=("quick",), size=32, threads=(1, 2), rounds=2, calibration=10,
             digits_model=harness.QUICK_MODEL, digits_epochs=1)
DIGITS_SIZE = 32


def run(*, quick=False):
    s = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        models = {variant: _speed(variant, s, tmp) for variant in s["variants"]}
        accuracy = _accuracy(s, tmp)
    return {"size": s["size"], "threads": list(s["threads"]), "models": models,
            "accuracy": accuracy, "digits": {"model": s["digits_model"], "size": DIGITS_SIZE,
                                             "epochs": s["digits_epochs"]},
            "converter": "keras_mixer.export.tflite.export_tflite(target='cpu')"}


def _convert_all(model, calibration, workdir, tag):
    """{mode: export report plus convert_s} of `model` in every mode of MODES."""
    from keras_mixer.export.tflite import export_tflite

    out = {}
    for mode, options in MODES.items():
        start = time.perf_counter()
        out[mode] = export_tflite(model, os.path.join(workdir, f"{tag}_{mode}.tflite"),
                                  representative=calibration, num_samples=len(calibration),
                                  overwrite=True, **options)
        out[mode]["convert_s"] = round(time.perf_counter() - start, 1)
    return out


def _speed(variant, s, tmp):
    from keras_mixer.export.data import load_images
    from keras_mixer.export.verify import LiteModel

    size = s["size"]
    calibration = load_images("default", (size, size), count=s["calibration"])[0]
    files = _convert_all(harness.build(variant, size, classifier_activation="softmax"),
                         calibration, tmp, variant.replace("/", ""))
    image = harness.images(1, size)[0]
    fns = {f"{mode} {t}t": (lambda m=LiteModel(r["path"], num_threads=t): m(image))
           for mode, r in files.items() for t in s["threads"]}
    times = harness.interleaved(fns, rounds=s["rounds"])
    return {"bytes": {m: r["bytes"] for m, r in files.items()},
            "convert_s": {m: r["convert_s"] for m, r in files.items()},
            "xnnpack_partitions": {m: r["xnnpack"]["partitions"] for m, r in files.items()},
            "latency_ms": {k: harness.summary([1e3 * t for t in ts]) for k, ts in times.items()},
            "speedup_vs_fp32": {k: harness.ratios(times[f"fp32 {k.split()[1]}"], ts)
                                for k, ts in times.items()}}


def _accuracy(s, tmp):
    """A Mixer trained here on the digits, then each .tflite on the whole test split."""
    import keras

    from keras_mixer.datasets import embedded_digits
    from keras_mixer.export.verify import verify_tflite

    (x_train, y_train), (x_test, y_test) = embedded_digits(DIGITS_SIZE)
    keras.utils.set_random_seed(0)
    model = harness.build(s["digits_model"], DIGITS_SIZE, classes=10,
                          classifier_activation="softmax")
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x_train.astype("float32"), y_train, epochs=s["digits_epochs"], batch_size=64,
              verbose=0)
    out = {}
    for mode, r in _convert_all(model, x_train[:200], tmp, "digits").items():
        report = verify_tflite(r["path"], model, images=(x_test, y_test), count=len(x_test))
        out[mode] = {k: report[k] for k in ("keras_accuracy", "tflite_accuracy",
                                             "top1_agreement", "max_abs_error")}
    return out


def render(data):
    threads = data["threads"]
    out = ["# TFLite: size, batch-1 latency and accuracy per quantization mode\n",
           f"Converted with {data['converter']}; latency in LiteRT with XNNPACK at "
           f"{data['size']}x{data['size']}, random-init weights, median [min-max] over "
           "interleaved rounds; speed-up against fp32 at the same thread count.\n"]
    rows = []
    for variant, r in data["models"].items():
        fp32 = r["bytes"]["fp32"]
        for mode, size in r["bytes"].items():
            rows.append([variant, mode, f"{size / 2**20:.1f}", f"{size / fp32:.3f}",
                         r["xnnpack_partitions"].get(mode, "?")] + [
                f"{harness.fmt(r['latency_ms'][k], 1)} ({harness.fmt(r['speedup_vs_fp32'][k], 2)}x)"
                if k in r["latency_ms"] else "-" for k in (f"{mode} {t}t" for t in threads)])
    out += harness.table(["model", "mode", "MiB", "x fp32 size", "XNNPACK partitions"]
                         + [f"latency ms, {t} thread{'s' * (t > 1)} (x fp32)" for t in threads],
                         rows)
    if data.get("accuracy"):
        d = data["digits"]
        out += [f"\nAccuracy on the embedded digits test split: Mixer {d['model']} at "
                f"{d['size']}x{d['size']}, trained {d['epochs']} epochs here.\n"]
        out += harness.table(
            ["mode", "Keras top-1", "TFLite top-1", "top-1 agreement", "max abs error (probabilities)"],
            [[m, f"{r['keras_accuracy']:.4f}", f"{r['tflite_accuracy']:.4f}",
              f"{r['top1_agreement']:.4f}", f"{r['max_abs_error']:.2e}"]
             for m, r in data["accuracy"].items()])
    return "\n".join(out + [harness.footer(data)])
