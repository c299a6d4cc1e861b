"""The default job, `keras-mixer train`, as a user runs it.

A fresh process (TensorFlow start-up included), as is and with --jit-compile:
test top-1 on the embedded digits, wall time, training images/s; then the
default model's train steps with and without XLA, interleaved in one process.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from . import harness, train_step

FULL = dict(extra=([], ["--jit-compile"]), rounds=20, n=harness.GEMM_N)
QUICK = dict(extra=(["--epochs", "1"],), rounds=2, n=256)


def run(*, quick=False):
    from keras_mixer.training.recipes import DEFAULT_MODEL, get_recipe
    from keras_mixer.training.trainer import make_optimizer

    s, recipe = QUICK if quick else FULL, get_recipe("default")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_run_command(extra, os.path.join(tmp, str(i))) for i, extra in enumerate(s["extra"])]
    steps = train_step.measure(
        dict(DEFAULT_MODEL), size=recipe["image_size"], batch=recipe["batch_size"],
        rounds=s["rounds"], n=s["n"], policies=("float32",), classes=10,
        optimizer=lambda: make_optimizer(recipe, 10_000))
    return {"runs": runs, "step_throughput": {**steps, "variant": "default"}}


def _run_command(extra, out):
    """`keras-mixer train [extra]` in a fresh process: its metrics and wall time."""
    command = [sys.executable, "-m", "keras_mixer.cli", "train", "--output-dir", out, *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall = time.perf_counter() - start
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"command": " ".join(["keras-mixer train", *extra]), "wall_s": round(wall, 1),
            **{k: metrics[k] for k in ("test_accuracy", "test_top5", "train_images_per_second",
                                       "epochs", "parameters")}}


def render(data):
    out = ["# `keras-mixer train` (the default job) on the embedded digits\n"]
    out += harness.table(
        ["command", "test top-1", "top-5", "wall time", "train images/s", "epochs"],
        [[f"`{r['command'].strip()}`", f"{r['test_accuracy']:.4f}", f"{r['test_top5']:.4f}",
          f"{r['wall_s']:.0f} s", f"{r['train_images_per_second']:.0f}", r["epochs"]]
         for r in data["runs"]])
    t = data["step_throughput"]
    out += [f"\nTrain steps of the default model, batch {t['batch']}:\n", *train_step.table(t)]
    return "\n".join(out + [harness.footer(data)])
