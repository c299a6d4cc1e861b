"""GEMM peak of every runtime here, float32 and int8.

float32 n^3 matmul in NumPy, TF, TF+XLA and JAX; float32 and int8 TFLite
FULLY_CONNECTED in LiteRT at 1 and 2 threads; all in interleaved rounds.
"""

import os
import tempfile

import numpy as np

from . import harness
from .jax_worker import JaxWorker

THREADS = (1, 2)


def run(*, quick=False):
    n, rounds = (256, 2) if quick else (harness.GEMM_N, 7)
    with tempfile.TemporaryDirectory() as tmp, JaxWorker() as jax:
        fns = {**harness.gemm_probes(n), "gemm jax_xla_f32": jax.gemm(n)}
        for threads in THREADS:
            fns.update(_tflite_fc(n, threads, tmp))
        times = harness.interleaved(fns, rounds=rounds)
    gflops = {name.removeprefix("gemm "): harness.summary([2 * n**3 / t / 1e9 for t in ts])
              for name, ts in times.items()}
    f32 = [k for k in gflops if k.endswith("f32") and not k.startswith("tflite")]
    best = max(f32, key=lambda k: gflops[k]["median"])
    return {"n": n, "gflops": gflops, "peak_name": best, "peak_gflops": gflops[best]["median"]}


def _tflite_fc(n, threads, workdir):
    """n x n x n matmul as one TFLite FULLY_CONNECTED, float32 and full int8."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from keras_mixer.export.tflite import convert
    from keras_mixer.files import write_bytes

    inputs = keras.Input((n, n))
    model = keras.Model(inputs, keras.layers.Dense(n, use_bias=False)(inputs))
    calib = np.random.default_rng(0).standard_normal((10, n, n)).astype(np.float32)
    fns = {}
    for mode, quantize in (("tflite_f32", "none"), ("tflite_int8", "int8")):
        path = os.path.join(workdir, f"{mode}.tflite")
        if not os.path.exists(path):
            write_bytes(path, convert(model, quantize=quantize, images=calib))
        interp = Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        interp.set_tensor(detail["index"], calib[:1].astype(detail["dtype"]))
        fns[f"{mode}_{threads}t"] = interp.invoke
    return fns


def render(data):
    n = data["n"]
    return "\n".join(
        [f"# GEMM peak ({n}x{n}x{n})\n",
         "Median [min-max] over interleaved rounds. Every other section re-times the "
         "float32 probes beside its model and takes each round's best as that round's peak.\n"]
        + harness.table(["runtime", "GFLOP/s (GOP/s for int8)"],
                        [[k, harness.fmt(v)] for k, v in data["gflops"].items()])
        + [f"\nBest float32 median: **{data['peak_gflops']:.1f} GFLOP/s** ({data['peak_name']}).",
           harness.footer(data)])
