"""What every section shares: machine facts, interleaved timing and its summary,
the float32 GEMM probes behind "fraction of peak", FLOP counts, the models
and images measured, the results writer and the markdown helpers."""

import json
import os
import platform
import re
import shutil
import subprocess
import time
from importlib import metadata

import numpy as np

# Sections import TensorFlow only inside functions, so this comes first: its
# start-up lines (a CUDA error-level one on CPU machines) would bury the
# results. Real failures still raise in Python.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # child processes run `python -m benchmarks.x` from here
RESULTS = os.path.join(HERE, "results")
GEMM_N = 2048  # float32 2048^3: large enough for every BLAS here to reach its peak
# The model of every --quick run: seconds, not minutes, on 2 cores.
QUICK_MODEL = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
FLAGS = re.compile(r"avx512[a-z_0-9]*|avx2|fma|amx[a-z_]*")
PACKAGES = ("tensorflow", "keras", "jax", "flax", "numpy", "ai-edge-litert")
ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "XLA_FLAGS", "OPENBLAS_CORETYPE")


# --- the machine ----------------------------------------------------------


def machine_info():
    """CPU model and SIMD flags, cores, load average, Python, package versions,
    the environment variables that change kernels, and NVIDIA GPUs if any."""
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    gpus = []
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        gpus = done.stdout.strip().splitlines()
    info = {"cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
            "simd_flags": sorted(set(FLAGS.findall(flags.group(1) if flags else ""))),
            "cores": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(), "gpus": gpus}
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info.update({k: os.environ[k] for k in ENV if k in os.environ})
    return info


def machine_line(m):
    """One markdown paragraph naming the machine of a record."""
    if isinstance(m, str):  # the earliest records kept only this
        return f"Machine: {m}."
    load = f"; 1-min load {m['load_avg'][0]:.2f} at start" if "load_avg" in m else ""
    gpu = ("; GPU: " + ", ".join(m["gpus"]) if m["gpus"] else "; no NVIDIA GPU") if "gpus" in m else ""
    return (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, flags "
            f"{' '.join(m.get('simd_flags', [])) or 'none'}{load}{gpu}. Python {m.get('python')}, "
            + ", ".join(f"{p} {m[p]}" for p in PACKAGES if p in m)
            + "".join(f"; {k}={m[k]}" for k in ENV if m.get(k)) + ".")


# --- timing ---------------------------------------------------------------


def seconds(fn):
    """Wall seconds of one call of `fn`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(candidates, *, rounds, warmup=1):
    """Times every zero-argument callable of {name: fn} once per round.

    The order rotates each round (ABC, BCA, CAB, ...), so load from other
    processes falls on all candidates alike and their per-round ratios are
    fair. `warmup` untimed calls each come first (tracing, compiling, caches).
    Returns {name: [seconds of each round]}.
    """
    if not (isinstance(candidates, dict) and candidates
            and all(callable(f) for f in candidates.values())):
        raise ValueError(f"candidates: expected a non-empty dict of name -> callable; "
                         f"got {candidates!r}")
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ValueError(f"rounds: expected an int >= 1; got {rounds!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup: expected an int >= 0; got {warmup!r}")
    names = list(candidates)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    out = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(seconds(candidates[name]))
    return out


def summary(values):
    """{median, min, max} of a non-empty list of numbers."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not values.size:
        raise ValueError(f"values: expected a non-empty list of numbers; got {values!r}")
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


# --- the GEMM limit -------------------------------------------------------


def gemm_probes(n=GEMM_N):
    """{"gemm <runtime>": fn}: a float32 n^3 matmul in NumPy, TF eager and TF+XLA.

    Timed beside a model in the same rounds, they give each round's peak under
    the same load (the cores may be shared); `round_peaks` reads them back.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ta, tb = tf.constant(a), tf.constant(b)
    xla = tf.function(tf.matmul, jit_compile=True)
    return {"gemm numpy_f32": lambda: a @ b,
            "gemm tf_f32": lambda: tf.matmul(ta, tb).numpy(),
            "gemm tf_xla_f32": lambda: xla(ta, tb).numpy()}


def round_peaks(times, *, n=GEMM_N):
    """GFLOP/s of each round's fastest "gemm ..." entry of `interleaved` times."""
    probes = [times[k] for k in times if k.startswith("gemm ")]
    return [max(2 * n**3 / p[r] / 1e9 for p in probes) for r in range(len(probes[0]))]


def gemm_peak(n=GEMM_N, *, rounds=3):
    """{median, min, max} GFLOP/s of the best float32 GEMM probe, round by round."""
    return summary(round_peaks(interleaved(gemm_probes(n), rounds=rounds), n=n))


def rates(times, *, flops, batch, n=GEMM_N):
    """Per candidate (probes aside): images/s and fraction of the same round's peak.

    Returns ({name: {"images_s", "peak_fraction"}}, peak GFLOP/s summary);
    `flops` is the work of one call (a batch of `batch` images).
    """
    peaks = round_peaks(times, n=n)
    modes = {name: {"images_s": summary([batch / t for t in ts]),
                    "peak_fraction": summary([flops / t / 1e9 / p for t, p in zip(ts, peaks)])}
             for name, ts in times.items() if not name.startswith("gemm ")}
    return modes, summary(peaks)


def ratios(numerators, denominators):
    """{median, min, max} of numerators[i] / denominators[i]: per-round ratios."""
    return summary([a / b for a, b in zip(numerators, denominators)])


# --- what is measured -----------------------------------------------------


def config_of(variant):
    """A paper variant ("B/16"), "quick" (QUICK_MODEL) or a config dict."""
    from keras_mixer.model import VARIANTS

    if isinstance(variant, dict):
        return variant
    return QUICK_MODEL if variant == "quick" else VARIANTS[variant]


def model_macs(config, size, *, classes=1000):
    """Multiply-accumulates of one image (paper Table 1 GMACs, to <1%).

    stem: S patches x (P*P*3 -> C); per block: token MLP on C columns
    (S -> D_S -> S) and channel MLP on S rows (C -> D_C -> C); head C -> classes.
    LayerNorm, GELU, adds and the mean are O(S*C), left out as in the paper.
    """
    p, c = config["patch_size"], config["hidden_dim"]
    s = (size // p) ** 2
    block = 2 * c * s * config["tokens_mlp_dim"] + 2 * s * c * config["channels_mlp_dim"]
    return s * p * p * 3 * c + config["num_blocks"] * block + c * classes


def model_flops(config, size, *, classes=1000):
    return 2 * model_macs(config, size, classes=classes)


def build(variant, size, **kwargs):
    """A random-init Mixer at size x size; logits unless told otherwise."""
    from keras_mixer.model import Mixer

    kwargs.setdefault("classifier_activation", None)
    return Mixer(config_of(variant), input_shape=(size, size, 3), **kwargs)


def images(batch, size):
    """Random float32 RGB 0-255 images (speed does not depend on the values)."""
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


# --- results --------------------------------------------------------------


def write_results(section, data, markdown, *, out_dir=RESULTS):
    """Writes out_dir/<section>.json and .md atomically; both name the machine
    (`data["machine"]`, measured now if absent). Returns the two paths."""
    from keras_mixer.files import write_bytes

    if not (isinstance(section, str) and re.fullmatch(r"[a-z][a-z0-9_]*", section)):
        raise ValueError(f"section: expected a lower-case name; got {section!r}")
    if not isinstance(data, dict):
        raise ValueError(f"data: expected a dict; got {type(data).__name__}")
    data = data if "machine" in data else {"machine": machine_info(), **data}
    title, _, rest = markdown.partition("\n")
    text = f"{title}\n\n{machine_line(data['machine'])}\n{rest}".rstrip("\n") + "\n"
    paths = [os.path.join(out_dir, f"{section}.{ext}") for ext in ("json", "md")]
    write_bytes(paths[0], (json.dumps(data, indent=1) + "\n").encode())
    write_bytes(paths[1], text.encode())
    return paths


def fmt(x, digits=1):
    """'median [min-max]' of a summary, or a plain number."""
    if isinstance(x, dict):
        return f"{x['median']:.{digits}f} [{x['min']:.{digits}f}-{x['max']:.{digits}f}]"
    return f"{x:.{digits}f}"


def table(header, rows):
    """Markdown table lines from a header list and row lists."""
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def footer(data):
    """How a record was made: command, time, duration, load while it ran."""
    loads = data.get("loads") or [x for r in data.get("rows", []) for x in r.get("loads", [])]
    parts = [f"`{data['command']}`" if data.get("command") else None, data.get("utc"),
             f"{data['wall_s']} s" if data.get("wall_s") else None,
             f"1-min load {min(loads):.2f}-{max(loads):.2f}" if loads else None]
    return "\n" + ", ".join(p for p in parts if p) + "."
