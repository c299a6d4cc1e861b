"""Training step images/s: float32 and bfloat16 (Keras' mixed_bfloat16 policy), XLA or not.

train_on_batch with Adam, each as a fraction of the same round's GEMM peak.
"""

import numpy as np

from keras_mixer.precision import Precision

from . import harness

FULL = dict(variant="S/16", size=224, batch=8, rounds=9, n=harness.GEMM_N)
QUICK = dict(variant="quick", size=32, batch=4, rounds=2, n=256)
PRECISIONS = (Precision.FLOAT32, Precision.BFLOAT16)


def run(*, quick=False):
    s = QUICK if quick else FULL
    return measure(s["variant"], size=s["size"], batch=s["batch"], rounds=s["rounds"], n=s["n"])


def measure(variant, *, size, batch, rounds, n, precisions=PRECISIONS, classes=1000,
            optimizer=lambda: "adam"):
    """Interleaved train steps of one model per precision, with and without XLA,
    on one random batch; `optimizer` makes each model's optimizer."""
    import keras
    import tensorflow as tf

    config = harness.config_of(variant)
    x = tf.constant(harness.images(batch, size))
    y = tf.constant(np.arange(batch) % classes)
    fns = {}
    for precision in precisions:
        for jit in (False, True):
            keras.mixed_precision.set_global_policy(precision.keras_policy)
            try:
                model = harness.build(config, size, classes=classes)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            model.compile(optimizer=optimizer(), jit_compile=jit,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            fns[precision.value + (" + xla" if jit else "")] = lambda m=model: m.train_on_batch(x, y)
    fns.update(harness.gemm_probes(n))
    first = {name: harness.seconds(fn) for name, fn in fns.items()}  # traces, compiles
    times = harness.interleaved(fns, rounds=rounds, warmup=0)
    # A step is ~3x the forward FLOPs: the backward pass takes input and weight gradients.
    flops = 3 * harness.model_flops(config, size, classes=classes) * batch
    modes, peak = harness.rates(times, flops=flops, batch=batch, n=n)
    for name, mode in modes.items():
        mode["first_call_s"] = first[name]
    return {"variant": variant, "batch": batch, "size": size, "modes": modes, "peak_gflops": peak,
            "speedup_vs_float32": {m: harness.ratios(times[precisions[0].value], times[m]) for m in modes}}


def render(data):
    return "\n".join([f"# Training step, {data['variant']} batch {data['batch']} at "
                      f"{data.get('size', 224)}\n", *table(data), harness.footer(data)])


def table(data):
    """The modes table (also used by train_default)."""
    peak = data.get("peak_gflops")
    lines = ["train_on_batch, median [min-max] over interleaved rounds"
             + (f"; GEMM peak {harness.fmt(peak, 0)} GFLOP/s, a step counted as 3x the "
                "forward FLOPs" if peak else "") + ".\n"]
    return lines + harness.table(
        ["mode", "images/s", "fraction of peak", "x float32 no-XLA", "first step s"],
        [[k, harness.fmt(v["images_s"], 2),
          f"{v['peak_fraction']['median']:.0%}" if "peak_fraction" in v else "-",
          harness.fmt(data["speedup_vs_float32"][k], 2) if k in data["speedup_vs_float32"] else "-",
          f"{v['first_call_s']:.1f}"]
         for k, v in data["modes"].items()])
