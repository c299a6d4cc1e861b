"""Inference images/s: eager, predict, tf.function, XLA, JAX jit.

Keras eager `model(x)`, `predict`, `tf.function`, `tf.function(jit_compile=True)`
and the JAX backend's `jax.jit` (a child process), each as a fraction of the
same round's GEMM peak.
"""

from . import harness
from .jax_worker import JaxWorker

FULL = dict(variants=("S/32", "S/16", "B/16"), batches=(1, 8), size=224, rounds=9,
            n=harness.GEMM_N)
QUICK = dict(variants=("quick",), batches=(1, 2), size=32, rounds=2, n=256)


def run(*, quick=False):
    s = QUICK if quick else FULL
    with JaxWorker() as jax:
        probes = {**harness.gemm_probes(s["n"]), "gemm jax_xla_f32": jax.gemm(s["n"])}
        rows = [_row(jax, probes, variant, batch, s)
                for variant in s["variants"] for batch in s["batches"]]
    return {"size": s["size"], "rows": rows}


def _row(jax, probes, variant, batch, s):
    import tensorflow as tf

    config = harness.config_of(variant)
    model, x = harness.build(config, s["size"]), tf.constant(harness.images(batch, s["size"]))
    graph = tf.function(lambda t: model(t, training=False))
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    fns = {"eager": lambda: model(x, training=False).numpy(),
           "predict": lambda: model.predict(x, batch_size=batch, verbose=0),
           "tf.function": lambda: graph(x).numpy(),
           "xla": lambda: xla(x).numpy(),
           "jax_jit": jax.model(config, size=s["size"], batch=batch),
           **probes}
    first = {name: harness.seconds(fn) for name, fn in fns.items()}  # traces, compiles
    times = harness.interleaved(fns, rounds=s["rounds"], warmup=0)
    flops = harness.model_flops(config, s["size"]) * batch
    modes, peak = harness.rates(times, flops=flops, batch=batch, n=s["n"])
    for name, mode in modes.items():
        mode["first_call_s"] = first[name]
    return {"variant": variant, "batch": batch, "gflop_per_image": flops / batch / 1e9,
            "modes": modes, "peak_gflops": peak,
            "xla_over_eager": harness.ratios(times["eager"], times["xla"])}


def render(data):
    rows = data["rows"]
    modes = list(rows[0]["modes"])
    out = [f"# Inference throughput at {data.get('size', 224)} (images/s; median fraction "
           "of the GEMM peak)\n",
           "Median [min-max] over interleaved rounds; the fraction of peak is taken per round "
           "against that round's best float32 GEMM probe (NumPy, TF, TF+XLA, JAX).\n"]
    out += harness.table(
        ["model", "batch", "GFLOP/img", *modes, "XLA / eager", "GEMM peak GFLOP/s"],
        [[r["variant"], r["batch"], f"{r['gflop_per_image']:.2f}",
          *(f"{harness.fmt(v['images_s'])} ({v['peak_fraction']['median']:.0%})"
            for v in r["modes"].values()),
          harness.fmt(r["xla_over_eager"], 2), harness.fmt(r["peak_gflops"], 0)] for r in rows])
    out.append("\nFirst call (trace/compile) seconds: " + "; ".join(
        f"{r['variant']} b{r['batch']}: " + ", ".join(
            f"{k} {v['first_call_s']:.1f}" for k, v in r["modes"].items()) for r in rows))
    return "\n".join(out + [harness.footer(data)])
