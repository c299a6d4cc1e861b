"""Checkpoint loading: seconds and peak memory, fresh process each.

`Mixer(variant, weights=<.npz>)` against a random-init build, on synthetic
files in the authors' layout (no download).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import harness

FULL = dict(variants=("B/16", "L/16"), repeats=2)
QUICK = dict(variants=("quick",), repeats=1)
FIELDS = ("seconds", "peak_rss_mib", "base_rss_mib")


def run(*, quick=False):
    from keras_mixer.weights import checkpoint_shapes

    s, rows = QUICK if quick else FULL, []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in s["variants"]:
            config, rng = harness.config_of(variant), np.random.default_rng(0)
            path = os.path.join(tmp, "checkpoint.npz")
            np.savez(path, **{k: rng.standard_normal(shape, dtype=np.float32) for k, shape in
                              checkpoint_shapes(config, (224 // config["patch_size"]) ** 2,
                                                1000).items()})
            runs = {"load": [], "random_init": []}
            for _ in range(s["repeats"]):  # alternated, a fresh process each
                runs["load"].append(measure_child({"variant": config, "weights": path}))
                runs["random_init"].append(measure_child({"variant": config}))
            rows.append({"variant": variant, "file_mib": os.path.getsize(path) / 2**20,
                         "params": runs["load"][0]["params"],
                         **{k: {f: harness.summary([r[f] for r in v]) for f in FIELDS}
                            for k, v in runs.items()}})
    return {"rows": rows}


def measure_child(spec):
    """`child(spec)` in a fresh `python -m benchmarks.convert` process."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.convert", json.dumps(spec)],
                          cwd=harness.ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"conversion child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(spec):
    """Times `Mixer(variant, weights=...)` (or a random build) in this process.

    Peak memory is VmHWM, which sees NumPy's and TensorFlow's C++ buffers alike
    (ru_maxrss would not do: Linux carries the parent's peak over fork and
    exec); the baseline is taken after the imports.
    """
    from keras_mixer.model import Mixer

    base = peak_rss_mib()
    start = time.perf_counter()
    model = Mixer(spec["variant"], weights=spec.get("weights"), classifier_activation=None)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "base_rss_mib": base, "peak_rss_mib": peak_rss_mib(),
            "params": int(model.count_params())}


def peak_rss_mib():
    """This process's peak resident memory (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: ru_maxrss is the next best thing
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def render(data):
    rows = []
    for r in data["rows"]:
        load, rnd = r["load"], r["random_init"]
        rows.append([r["variant"], f"{r['file_mib']:.0f}", f"{r['params']:,}",
                     harness.fmt(load["seconds"]), harness.fmt(rnd["seconds"]),
                     f"{load['peak_rss_mib']['median']:.0f} ({load['base_rss_mib']['median']:.0f})",
                     f"{rnd['peak_rss_mib']['median']:.0f}"])
    return "\n".join(
        ["# Pretrained-checkpoint conversion (synthetic authors'-layout .npz, fresh process "
         "each run)\n"]
        + harness.table(["model", "file MiB", "params", "load+convert s", "random-init build s",
                         "peak RSS MiB (after imports)", "peak RSS, random init"], rows)
        + [harness.footer(data)])


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
