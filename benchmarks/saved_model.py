"""SavedModel serving images/s, exported with and without XLA.

serving_default on one float32 batch, interleaved; the first (compiling)
call is timed on its own.
"""

import os
import tempfile

from . import harness

FULL = dict(variant="S/16", size=224, batch=8, rounds=9)
QUICK = dict(variant="quick", size=32, batch=2, rounds=2)


def run(*, quick=False):
    import tensorflow as tf

    from keras_mixer.export.saved_model import export_saved_model

    s = QUICK if quick else FULL
    model = harness.build(s["variant"], s["size"], classifier_activation="softmax")
    batch = tf.constant(harness.images(s["batch"], s["size"]))
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, xla in (("no_xla", False), ("xla", True)):
            path = export_saved_model(model, os.path.join(tmp, key), xla=xla)
            serve = tf.saved_model.load(path).signatures["serving_default"]
            fns[key] = lambda f=serve: f(images=batch)["probabilities"].numpy()
        first = {key: harness.seconds(fn) for key, fn in fns.items()}
        times = harness.interleaved(fns, rounds=s["rounds"], warmup=0)
    out = {key: {"images_per_s": harness.summary([s["batch"] / t for t in times[key]]),
                 "first_call_s": first[key]} for key in fns}
    return {**out, "model": s["variant"], "batch": s["batch"], "size": s["size"],
            "xla_speedup": harness.ratios(times["no_xla"], times["xla"])}


def render(data):
    return "\n".join(
        [f"# SavedModel serving_default, {data['model']} batch {data['batch']}, XLA or not\n",
         "images/s, median [min-max] over interleaved rounds.\n"]
        + harness.table(["export", "images/s", "first call (compile) s"],
                        [[k, harness.fmt(data[k]["images_per_s"]), f"{data[k]['first_call_s']:.1f}"]
                         for k in ("no_xla", "xla")])
        + [f"\nXLA / no-XLA throughput: {harness.fmt(data['xla_speedup'], 2)}x.",
           harness.footer(data)])
