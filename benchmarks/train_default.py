"""Benchmark of the README's main job, `keras-mixer train` with no arguments.

    python benchmarks/train_default.py                # ~6 min on 2 cores
    python benchmarks/train_default.py --repeats 7 --skip-xla-run

1. The default command, run as a user runs it (a fresh `keras-mixer train`
   process, so TensorFlow start-up counts), once as is and once with
   `--jit-compile`: test top-1 on the embedded digits test split (360 images),
   wall time, and training images/s (median epoch after the first).
2. Train-step throughput of the default model, XLA vs not, side by side in one
   process: both compiled models run the same batches in interleaved rounds,
   so load from other processes hits them alike; medians, min/max, the ratio.
Results go to benchmarks/results/train_default.{json,md}.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

GOAL_ACCURACY = 0.97  # the goal for the default command
STEPS_PER_ROUND = 10  # train steps timed per model per round
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def stats(values):
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size)}


def run_default_command(extra, workdir):
    """`keras-mixer train [extra]` in a fresh process; its metrics and wall time."""
    out = os.path.join(workdir, "run" + "".join(extra).replace("-", "_"))
    command = [sys.executable, "-m", "keras_mixer.cli", "train", "--output-dir", out, *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"command": "keras-mixer train " + " ".join(extra), "wall_s": round(wall, 1),
            "test_accuracy": metrics["test_accuracy"], "test_top5": metrics["test_top5"],
            "train_images_per_second": metrics["train_images_per_second"],
            "epochs": metrics["epochs"], "parameters": metrics["parameters"]}


def step_throughput(repeats):
    """Images/s of train steps of the default model, XLA vs not, interleaved."""
    import keras

    from keras_mixer.training.data import load_source, train_pipeline
    from keras_mixer.training.recipes import DEFAULT_MODEL, get_recipe
    from keras_mixer.training.trainer import make_optimizer
    from keras_mixer.model import Mixer

    recipe = get_recipe("default")
    source = load_source("default", image_size=recipe["image_size"])
    batches = list(train_pipeline(source, recipe, recipe["batch_size"]).take(STEPS_PER_ROUND))
    models = {}
    for name, jit in (("no_xla", False), ("xla", True)):
        keras.utils.set_random_seed(0)
        model = Mixer(DEFAULT_MODEL, input_shape=(recipe["image_size"],) * 2 + (3,), classes=10)
        model.compile(make_optimizer(recipe, 10_000), keras.losses.CategoricalCrossentropy(),
                      jit_compile=jit)
        start = time.perf_counter()
        model.train_on_batch(*batches[0])  # traces (and for XLA compiles)
        models[name] = (model, time.perf_counter() - start)
    rates = {name: [] for name in models}
    for _ in range(repeats):
        for name, (model, _) in models.items():
            start = time.perf_counter()
            for x, y in batches:
                model.train_on_batch(x, y)
            rates[name].append(len(batches) * recipe["batch_size"] / (time.perf_counter() - start))
    ratio = [a / b for a, b in zip(rates["xla"], rates["no_xla"])]
    return {"batch": recipe["batch_size"], "steps_per_round": STEPS_PER_ROUND,
            "first_step_s": {n: round(t, 2) for n, (_, t) in models.items()},
            "images_per_second": {n: stats(r) for n, r in rates.items()},
            "xla_over_no_xla": stats(ratio)}


def write_markdown(result, path):
    lines = ["# `keras-mixer train` (the default job) on the embedded digits", "",
             f"Machine: {result['machine']}. Reproduce: `python benchmarks/train_default.py`.", "",
             "| command | test top-1 | top-5 | wall time | train images/s | goal top-1 >= 0.97 |",
             "|---|---|---|---|---|---|"]
    for run in result["runs"]:
        lines.append(f"| `{run['command'].strip()}` | {run['test_accuracy']:.4f} | {run['test_top5']:.4f} | "
                     f"{run['wall_s']:.0f} s | {run['train_images_per_second']:.0f} | "
                     f"{'met' if run['test_accuracy'] >= GOAL_ACCURACY else 'MISSED'} |")
    t = result["step_throughput"]
    lines += ["", f"Train-step throughput, batch {t['batch']}, {t['steps_per_round']} steps per round, "
              f"{t['xla_over_no_xla']['n']} interleaved rounds (median, min-max):", "",
              "| | images/s | first step (trace/compile) |", "|---|---|---|"]
    for name in ("no_xla", "xla"):
        s = t["images_per_second"][name]
        lines.append(f"| {name.replace('_', ' ')} | {s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f}) | "
                     f"{t['first_step_s'][name]} s |")
    r = t["xla_over_no_xla"]
    lines += ["", f"XLA / no XLA: {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}).", "",
              "The machine is shared with other jobs, so absolute numbers move between runs; "
              "the interleaved ratio is the steadier figure."]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved throughput rounds")
    parser.add_argument("--skip-xla-run", action="store_true", help="run the default command only once")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        runs = [run_default_command([], workdir)]
        if not args.skip_xla_run:
            runs.append(run_default_command(["--jit-compile"], workdir))
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
              "runs": runs, "step_throughput": step_throughput(args.repeats)}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "train_default.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    write_markdown(result, os.path.join(RESULTS, "train_default.md"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
