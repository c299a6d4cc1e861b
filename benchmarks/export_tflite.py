"""Export benchmark: TFLite size / batch-1 latency / accuracy per quantization
mode, and XLA vs non-XLA SavedModel throughput.

    python benchmarks/export_tflite.py                  # S/16 and B/16, ~15 min on 2 cores
    python benchmarks/export_tflite.py --models S/16 --repeats 5

- Size and latency: Mixer S/16 and B/16 at 224x224 with RANDOM-INIT weights
  (1000-class head; size and speed do not depend on the weight values),
  int8 calibrated on 64 embedded-digit images resized to 224. Latency is one
  image per invoke in LiteRT (ai_edge_litert) with 2 threads and its default
  XNNPACK delegate. All modes of a model are loaded together and timed in
  interleaved rounds, so a load spike from other processes hits them alike;
  we report medians with min/max over rounds and ratios to float32.
- Accuracy: a small Mixer trained here on the embedded digits (32x32), on the
  whole test split (360 images), Keras vs each .tflite.
- Server: SavedModel serving_default, float32 batch of 8, XLA vs not,
  interleaved rounds; the first (compiling) call is timed separately.
Results go to benchmarks/results/export_tflite.{json,md}.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

# Modes compared; "int8+float-ln" is int8 with the LayerNorm ops kept in float.
MODES = {
    "fp32": dict(quantize="none"),
    "fp16": dict(quantize="float16"),
    "dynamic": dict(quantize="dynamic"),
    "int8": dict(quantize="int8"),
    "int8+float-ln": dict(quantize="int8", float_ops="layernorm"),
}
CALIBRATION_IMAGES = 64  # representative images for the 224 models
THREADS = 2              # LiteRT interpreter threads (a phone's big cores)
INVOKES_PER_ROUND = 3    # batch-1 invokes timed per mode per round
SERVER_BATCH = 8         # SavedModel throughput batch
# Accuracy model: trained on the embedded digits in ~1 minute on 2 cores.
DIGITS_CONFIG = dict(num_blocks=4, patch_size=4, hidden_dim=64, tokens_mlp_dim=32,
                     channels_mlp_dim=128)
DIGITS_SIZE, DIGITS_EPOCHS = 32, 15
# Goals from the issue: int8 vs fp32.
GOAL_SPEEDUP, GOAL_ACC_DROP, GOAL_SIZE = 2.0, 0.01, 0.27


def stats(values):
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size)}


def convert_all(model, images, workdir, tag):
    from keras_mixer.export.tflite import export_tflite

    files = {}
    for mode, options in MODES.items():
        path = os.path.join(workdir, f"{tag}_{mode}.tflite")
        start = time.perf_counter()
        report = export_tflite(model, path, representative=images,
                               num_samples=len(images), overwrite=True, **options)
        files[mode] = {"path": path, "bytes": report["bytes"],
                       "convert_s": round(time.perf_counter() - start, 1),
                       "xnnpack_partitions": report["xnnpack"]["partitions"],
                       "ops": report["ops"]}
        print(f"  {tag} {mode}: {report['bytes'] / 2**20:.1f} MiB, "
              f"{files[mode]['xnnpack_partitions']} XNNPACK partition(s), "
              f"converted in {files[mode]['convert_s']} s", flush=True)
    return files


def latency(files, size, repeats):
    """Interleaved batch-1 latency (ms) of every file."""
    from keras_mixer.export.verify import LiteModel

    models = {mode: LiteModel(info["path"], num_threads=THREADS) for mode, info in files.items()}
    image = np.random.default_rng(0).uniform(0, 255, (*size, 3)).astype(np.float32)
    for lite in models.values():  # warm-up: first invoke allocates and packs weights
        lite(image)
    times = {mode: [] for mode in models}
    for _ in range(repeats):
        for mode, lite in models.items():
            start = time.perf_counter()
            for _ in range(INVOKES_PER_ROUND):
                lite(image)
            times[mode].append((time.perf_counter() - start) / INVOKES_PER_ROUND * 1e3)
    return {mode: stats(t) for mode, t in times.items()}


def size_and_speed(variants, repeats, workdir):
    from keras_mixer.export.data import load_images
    from keras_mixer.model import Mixer

    images, _, _ = load_images("default", (224, 224), count=CALIBRATION_IMAGES)
    results = {}
    for variant in variants:
        print(f"{variant}: converting", flush=True)
        model = Mixer(variant, weights=None, input_shape=(224, 224, 3))
        tag = variant.replace("/", "")
        files = convert_all(model, images, workdir, tag)
        del model
        print(f"{variant}: timing", flush=True)
        lat = latency(files, (224, 224), repeats)
        fp32 = files["fp32"]["bytes"]
        results[variant] = {
            mode: {**{k: v for k, v in info.items() if k != "path"},
                   "size_vs_fp32": info["bytes"] / fp32, "latency_ms": lat[mode],
                   "speedup_vs_fp32": lat["fp32"]["median"] / lat[mode]["median"]}
            for mode, info in files.items()}
    return results


def accuracy(workdir):
    import keras

    from keras_mixer.export.verify import verify_tflite
    from keras_mixer.datasets import embedded_digits
    from keras_mixer.model import Mixer

    (x_train, y_train), (x_test, y_test) = embedded_digits(DIGITS_SIZE)
    keras.utils.set_random_seed(0)
    model = Mixer(DIGITS_CONFIG, input_shape=(DIGITS_SIZE, DIGITS_SIZE, 3), classes=10)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(x_train.astype("float32"), y_train, epochs=DIGITS_EPOCHS, batch_size=64, verbose=0)
    print(f"digits model trained in {time.perf_counter() - start:.0f} s", flush=True)
    files = convert_all(model, x_train[:200], workdir, "digits")
    out = {}
    for mode, info in files.items():
        report = verify_tflite(info["path"], model, images=(x_test, y_test), count=len(x_test))
        out[mode] = {k: report[k] for k in ("keras_accuracy", "tflite_accuracy",
                                             "top1_agreement", "max_abs_error", "bytes")}
    return out


def server_throughput(variant, repeats, workdir):
    import tensorflow as tf

    from keras_mixer.export.saved_model import export_saved_model
    from keras_mixer.model import Mixer

    model = Mixer(variant, weights=None, input_shape=(224, 224, 3))
    batch = tf.constant(np.random.default_rng(0).uniform(0, 255, (SERVER_BATCH, 224, 224, 3)),
                        tf.float32)
    fns, first = {}, {}
    for xla in (False, True):
        path = export_saved_model(model, os.path.join(workdir, f"srv_{xla}"), xla=xla,
                                  overwrite=True)
        fns[xla] = tf.saved_model.load(path).signatures["serving_default"]
        start = time.perf_counter()
        fns[xla](images=batch)
        first[xla] = time.perf_counter() - start
    rates = {False: [], True: []}
    for _ in range(repeats):
        for xla, fn in fns.items():
            start = time.perf_counter()
            fn(images=batch)["probabilities"].numpy()
            rates[xla].append(SERVER_BATCH / (time.perf_counter() - start))
    out = {("xla" if xla else "no_xla"): {"images_per_s": stats(r), "first_call_s": first[xla]}
           for xla, r in rates.items()}
    out["xla_speedup"] = out["xla"]["images_per_s"]["median"] / out["no_xla"]["images_per_s"]["median"]
    out.update(model=variant, batch=SERVER_BATCH)
    return out


def goals(speed, acc):
    verdict = {}
    for variant, modes in speed.items():
        verdict[variant] = {
            "int8_speedup": modes["int8"]["speedup_vs_fp32"],
            "int8_size_vs_fp32": modes["int8"]["size_vs_fp32"],
            "speedup_met": modes["int8"]["speedup_vs_fp32"] >= GOAL_SPEEDUP,
            "size_met": modes["int8"]["size_vs_fp32"] <= GOAL_SIZE,
        }
    drop = acc["fp32"]["tflite_accuracy"] - acc["int8"]["tflite_accuracy"]
    verdict["int8_accuracy_drop"] = drop
    verdict["accuracy_met"] = drop <= GOAL_ACC_DROP
    return verdict


def markdown(result):
    lines = ["# Export benchmark", "", f"`{result['command']}` on {result['machine']}; "
             f"{result['date']}. LiteRT {result['litert']}, {THREADS} threads, XNNPACK.", "",
             "Size and batch-1 latency (random-init weights; median [min-max] over "
             f"{result['repeats']} interleaved rounds of {INVOKES_PER_ROUND} invokes):", "",
             "| model | mode | size MiB | x fp32 size | latency ms | speed-up vs fp32 | XNNPACK partitions |",
             "|---|---|---|---|---|---|---|"]
    for variant, modes in result["speed"].items():
        for mode, r in modes.items():
            lat = r["latency_ms"]
            lines.append(f"| {variant} | {mode} | {r['bytes'] / 2**20:.1f} | {r['size_vs_fp32']:.3f} | "
                         f"{lat['median']:.1f} [{lat['min']:.1f}-{lat['max']:.1f}] | "
                         f"{r['speedup_vs_fp32']:.2f}x | {r['xnnpack_partitions']} |")
    lines += ["", f"Accuracy on the embedded digits test split (360 images), Mixer {DIGITS_CONFIG} "
              f"at {DIGITS_SIZE}x{DIGITS_SIZE} trained {DIGITS_EPOCHS} epochs here:", "",
              "| mode | Keras top-1 | TFLite top-1 | top-1 agreement | max abs error (probabilities) |",
              "|---|---|---|---|---|"]
    for mode, r in result["accuracy"].items():
        lines.append(f"| {mode} | {r['keras_accuracy']:.4f} | {r['tflite_accuracy']:.4f} | "
                     f"{r['top1_agreement']:.4f} | {r['max_abs_error']:.2e} |")
    s = result["server"]
    lines += ["", f"SavedModel serving_default, {s['model']}, batch {s['batch']} (images/s, median [min-max]):", "",
              "| | images/s | first call (compile) s |", "|---|---|---|"]
    for key in ("no_xla", "xla"):
        r = s[key]["images_per_s"]
        lines.append(f"| {key} | {r['median']:.1f} [{r['min']:.1f}-{r['max']:.1f}] | {s[key]['first_call_s']:.1f} |")
    lines += ["", f"XLA / no-XLA throughput: {s['xla_speedup']:.2f}x", "",
              "Goals (int8 vs fp32): " + json.dumps(result["goals"])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="S/16,B/16", help="variants at 224 (default: S/16,B/16)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    import ai_edge_litert

    result = {"command": "python benchmarks/export_tflite.py " + " ".join(argv or []),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "litert": getattr(ai_edge_litert, "__version__", "2.3.0"), "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as workdir:
        result["accuracy"] = accuracy(workdir)
        result["speed"] = size_and_speed(args.models.split(","), args.repeats, workdir)
        result["server"] = server_throughput(args.models.split(",")[0], args.repeats, workdir)
    result["goals"] = goals(result["speed"], result["accuracy"])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "export_tflite.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "export_tflite.md"), "w") as f:
        f.write(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
