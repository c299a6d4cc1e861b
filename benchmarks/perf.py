"""Performance harness: keras_mixer against this machine's GEMM limit.

    python benchmarks/perf.py --quick                       # tiny model, ~30 s: harness check
    python benchmarks/perf.py --sections gemm,infer         # ~4 min on 2 idle cores
    python benchmarks/perf.py --sections train,tflite,profile
    python benchmarks/perf.py --sections convert            # writes ~1 GB of temp files

Sections (each measured side by side in interleaved rounds; medians, min/max):
  gemm     float32 2048^3 matmul peak: NumPy, TF, TF+XLA, JAX; int8 and float32
           TFLite FULLY_CONNECTED (1 and 2 threads)
  infer    images/s of S/32, S/16, B/16 at 224, batch 1 and 8: Keras eager,
           predict, tf.function, tf.function(jit_compile=True), JAX jit;
           achieved FLOP/s as a fraction of the best float32 GEMM peak
  train    S/16 train_on_batch images/s: float32 / mixed_bfloat16, with/without XLA
  tflite   batch-1 latency of fp32/fp16/dynamic/int8 in LiteRT (XNNPACK), 1 and 2 threads
  convert  time and peak RSS of loading synthetic authors'-layout B/16 and L/16 .npz
  profile  op-level self time of one B/16 batch-8 forward step, TF graph and XLA
  tokenmix B/16 batch 8: the library's token mixing (transpose, Dense, transpose)
           against a transpose-free einsum form, same weights; eager/graph/XLA
  parts    B/16 batch 8 under XLA: the blocks' token and channel GEMMs alone, the
           MLPs with LayerNorm/bias/GELU/residual, and whole blocks, each as a
           fraction of the GEMM peak: where the time beyond the GEMM limit goes
Each run merges its sections into benchmarks/results/perf.json and rewrites
perf.md from it. `--wait-idle S` waits up to S seconds for the 1-min load
average to drop below 1 before measuring (the cores may be shared).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import perf_measure as pm  # noqa: E402
import perf_report  # noqa: E402

TINY = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
# Settings per mode; every number here is a sample size, not a tuning knob.
FULL = dict(
    size=224,                       # the paper's resolution
    gemm_n=2048,                    # the peak probe
    variants=("S/32", "S/16", "B/16"), batches=(1, 8),
    rounds=5,                       # interleaved rounds per comparison
    target_s=0.4,                   # seconds of calls per mode per round
    probe_s=0.15,                   # seconds per GEMM probe per round
    train_variant="S/16", train_batch=8,
    tflite_variant="S/16", calib_images=16, threads=(1, 2),
    convert_variants=("B/16", "L/16"), convert_repeats=2,
    profile_variant="B/16", profile_batch=8,
)
QUICK = dict(FULL, size=32, gemm_n=256, variants=("tiny",), batches=(1, 2), rounds=2,
             target_s=0.05, probe_s=0.02, train_variant="tiny", train_batch=4, tflite_variant="tiny",
             calib_images=10, convert_variants=("tiny",), convert_repeats=1,
             profile_variant="tiny", profile_batch=2)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def config_of(variant):
    from keras_mixer.model import VARIANTS

    return TINY if variant == "tiny" else VARIANTS[variant]


def build(variant, size, **kwargs):
    from keras_mixer.model import Mixer

    return Mixer(config_of(variant), input_shape=(size, size, 3),
                 classifier_activation=None, **kwargs)


def images(batch, size):
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def gflops(flops, seconds):
    return flops / seconds / 1e9


def section_gemm(s, workdir):
    n, flops = s["gemm_n"], 2 * s["gemm_n"] ** 3
    fns = pm.gemm_fns(n)
    for threads in s["threads"]:
        fns.update(pm.tflite_gemm_fns(n, threads, workdir))
    worker = pm.JaxWorker()
    try:
        worker.ask(cmd="gemm", n=n)
        fns["jax_xla_f32"] = worker.timer("gemm")
        times, loads = pm.interleaved(fns, s["rounds"], s["target_s"])
    finally:
        worker.close()
    rows = {name: dict(pm.stats([gflops(flops, t) for t in v["s"]]), calls=v["calls"])
            for name, v in times.items()}
    f32 = [k for k in rows if k.endswith("f32") and not k.startswith("tflite")]
    best = max(f32, key=lambda k: rows[k]["median"])
    return {"n": n, "gflops": rows, "peak_name": best, "peak_gflops": rows[best]["median"],
            "loads": loads}


def probes(s, worker):
    """float32 GEMM probes timed in every round beside the model (NumPy, TF, XLA, JAX).

    The cores are shared, so the peak is measured under the same load as the
    model, round by round; a round's peak is the best of its probes.
    """
    worker.ask(cmd="gemm", n=s["gemm_n"])
    fns = {f"gemm {k}": f for k, f in pm.gemm_fns(s["gemm_n"]).items()}
    fns["gemm jax_xla_f32"] = worker.timer("gemm")
    return fns


def round_peaks(times, s):
    """GFLOP/s of each round's best GEMM probe (the `gemm *` entries of `times`)."""
    gemm = [k for k in times if k.startswith("gemm ")]
    return [max(gflops(2 * s["gemm_n"] ** 3, times[k]["s"][r]) for k in gemm)
            for r in range(s["rounds"])]


def with_peak(times, flops, batch, s):
    """Per-mode images/s and fraction of the same round's best GEMM probe."""
    gemm = [k for k in times if k.startswith("gemm ")]
    peaks = round_peaks(times, s)
    modes = {name: {"images_s": pm.stats([batch / t for t in v["s"]]),
                    "first_call_s": v["first_s"],
                    "peak_fraction": pm.stats([gflops(flops, t) / p
                                               for t, p in zip(v["s"], peaks)])}
             for name, v in times.items() if name not in gemm}
    return modes, pm.stats(peaks)


def section_infer(s):
    import tensorflow as tf

    worker, rows = pm.JaxWorker(), []
    try:
        gemm = probes(s, worker)
        for variant in s["variants"]:
            for batch in s["batches"]:
                rows.append(_infer_one(tf, worker, gemm, variant, batch, s))
                print(f"  infer {variant} b{batch}: " + ", ".join(
                    f"{m} {v['images_s']['median']:.1f}" for m, v in rows[-1]["modes"].items()),
                    flush=True)
    finally:
        worker.close()
    return {"rows": rows}


def _infer_one(tf, worker, gemm, variant, batch, s):
    model, x = build(variant, s["size"]), tf.constant(images(batch, s["size"]))
    graph = tf.function(lambda t: model(t, training=False))
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    worker.ask(cmd="load", variant=config_of(variant), size=s["size"], batch=batch)
    fns = {
        "eager": lambda: model(x, training=False).numpy(),
        "predict": lambda: model.predict(x, batch_size=batch, verbose=0),
        "tf.function": lambda: graph(x).numpy(),
        "xla": lambda: xla(x).numpy(),
        "jax_jit": worker.timer("model"),
        **gemm,
    }
    times, loads = pm.interleaved(fns, s["rounds"], s["target_s"],
                                  {k: s["probe_s"] for k in gemm})
    flops = pm.model_flops(config_of(variant), s["size"]) * batch
    modes, peak = with_peak(times, flops, batch, s)
    ratio = [e / x_ for e, x_ in zip(times["eager"]["s"], times["xla"]["s"])]
    return {"variant": variant, "batch": batch, "gflop_per_image": flops / batch / 1e9,
            "modes": modes, "peak_gflops": peak, "xla_over_eager": pm.stats(ratio),
            "loads": loads}


def section_train(s):
    import keras
    import tensorflow as tf

    batch, size = s["train_batch"], s["size"]
    x = tf.constant(images(batch, size))
    y = tf.constant(np.arange(batch) % 1000)
    fns = {}
    for policy in ("float32", "mixed_bfloat16"):
        for jit in (False, True):
            keras.mixed_precision.set_global_policy(policy)
            try:
                model = build(s["train_variant"], size)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            model.compile(optimizer="adam", jit_compile=jit,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            fns[f"{policy}{' + xla' if jit else ''}"] = (
                lambda m=model: m.train_on_batch(x, y))
    worker = pm.JaxWorker()
    try:
        gemm = probes(s, worker)
        times, loads = pm.interleaved({**fns, **gemm}, s["rounds"], s["target_s"],
                                      {k: s["probe_s"] for k in gemm})
    finally:
        worker.close()
    # A training step is ~3x the forward FLOPs (backward: grads of inputs and weights).
    flops = 3 * pm.model_flops(config_of(s["train_variant"]), size) * batch
    modes, peak = with_peak(times, flops, batch, s)
    base = times["float32"]["s"]
    ratios = {name: pm.stats([b / t for b, t in zip(base, times[name]["s"])])
              for name in modes}
    return {"variant": s["train_variant"], "batch": batch, "modes": modes,
            "speedup_vs_float32": ratios, "loads": loads, "peak_gflops": peak}


def section_tflite(s, workdir):
    from ai_edge_litert.interpreter import Interpreter
    from keras_mixer.export.tflite import export_tflite

    model, size = build(s["tflite_variant"], s["size"]), s["size"]
    calib = images(s["calib_images"], size)
    fns, sizes, convert_s, partitions = {}, {}, {}, {}
    for mode, quantize in (("fp32", "none"), ("fp16", "float16"),
                           ("dynamic", "dynamic"), ("int8", "int8")):
        path = os.path.join(workdir, f"{mode}.tflite")
        start = time.perf_counter()
        report = export_tflite(model, path, quantize=quantize, target="cpu",
                               representative=calib, num_samples=len(calib), overwrite=True)
        convert_s[mode], sizes[mode] = time.perf_counter() - start, report["bytes"]
        partitions[mode] = report["xnnpack"]["partitions"]
        for threads in s["threads"]:
            interp = Interpreter(model_path=path, num_threads=threads)
            interp.allocate_tensors()
            detail = interp.get_input_details()[0]
            interp.set_tensor(detail["index"], calib[:1].astype(detail["dtype"]))
            fns[f"{mode} {threads}t"] = interp.invoke
    times, loads = pm.interleaved(fns, 3 * s["rounds"], s["target_s"])
    rows = {name: pm.stats([1000 * t for t in v["s"]]) for name, v in times.items()}
    base = {t: times[f"fp32 {t}t"]["s"] for t in s["threads"]}
    speedup = {name: pm.stats([b / t for b, t in zip(base[int(name.split()[1][:-1])], v["s"])])
               for name, v in times.items()}
    return {"variant": s["tflite_variant"], "latency_ms": rows, "speedup_vs_fp32": speedup,
            "bytes": sizes, "convert_s": convert_s, "xnnpack_partitions": partitions,
            "loads": loads, "converter": "export.tflite.export_tflite(target='cpu')"}


def section_convert(s, workdir):
    from keras_mixer.weights import checkpoint_shapes

    rows = []
    for variant in s["convert_variants"]:
        config, rng = config_of(variant), np.random.default_rng(0)
        tokens = (s["size"] // config["patch_size"]) ** 2
        path = os.path.join(workdir, f"{variant.replace('/', '_')}.npz")
        np.savez(path, **{k: rng.standard_normal(shape, dtype=np.float32)
                          for k, shape in checkpoint_shapes(config, tokens, 1000).items()})
        runs = {"load": [], "random_init": []}
        for _ in range(s["convert_repeats"]):  # alternate, fresh process each time
            runs["load"].append(pm.run_conversion_child({"variant": config, "weights": path}))
            runs["random_init"].append(pm.run_conversion_child({"variant": config}))
        rows.append({"variant": variant, "file_mib": os.path.getsize(path) / 2**20,
                     "params": runs["load"][0]["params"], "loads": [os.getloadavg()[0]],
                     **{k: {f: pm.stats([r[f] for r in v])
                            for f in ("seconds", "peak_rss_mib", "base_rss_mib")}
                        for k, v in runs.items()}})
        os.remove(path)
        print(f"  convert {variant}: {rows[-1]['load']['seconds']['median']:.1f} s", flush=True)
    return {"rows": rows}


def section_profile(s):
    model = build(s["profile_variant"], s["size"])
    x = images(s["profile_batch"], s["size"])
    return {"variant": s["profile_variant"], "batch": s["profile_batch"],
            "graph": perf_report.profile_step(model, x, jit_compile=False),
            "xla": perf_report.profile_step(model, x, jit_compile=True)}


def section_tokenmix(s):
    from unittest import mock

    import tensorflow as tf

    import keras_mixer.model

    variant, batch = s["profile_variant"], s["profile_batch"]
    base = build(variant, s["size"])
    with mock.patch.object(keras_mixer.model, "MixerBlock", pm.einsum_block_class()):
        alt = build(variant, s["size"])
    rng = np.random.default_rng(0)  # non-zero head, so the logits differ if the math does
    alt.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32)
                     for w in base.get_weights()])
    base.set_weights(alt.get_weights())
    x = tf.constant(images(batch, s["size"]))
    fns, outputs = {}, {}
    for name, model in (("transpose", base), ("einsum", alt)):
        graph = tf.function(lambda t, m=model: m(t, training=False))
        xla = tf.function(lambda t, m=model: m(t, training=False), jit_compile=True)
        fns.update({f"{name} eager": lambda m=model: m(x, training=False).numpy(),
                    f"{name} graph": lambda f=graph: f(x).numpy(),
                    f"{name} xla": lambda f=xla: f(x).numpy()})
        outputs[name] = fns[f"{name} xla"]()
    times, loads = pm.interleaved(fns, s["rounds"], s["target_s"])
    speedup = {mode: pm.stats([a / b for a, b in zip(times[f"transpose {mode}"]["s"],
                                                     times[f"einsum {mode}"]["s"])])
               for mode in ("eager", "graph", "xla")}
    return {"variant": variant, "batch": batch, "loads": loads, "einsum_speedup": speedup,
            "images_s": {k: pm.stats([batch / t for t in v["s"]]) for k, v in times.items()},
            "max_logit_diff": float(np.abs(outputs["transpose"] - outputs["einsum"]).max()),
            "logit_scale": float(np.abs(outputs["transpose"]).max())}


def section_parts(s):
    variant, batch = s["profile_variant"], s["profile_batch"]
    parts = pm.block_part_fns(config_of(variant), s["size"], batch)
    gemm = {f"gemm {k}": f for k, f in pm.gemm_fns(s["gemm_n"]).items()}
    times, loads = pm.interleaved({**{k: f for k, (f, _) in parts.items()}, **gemm},
                                  s["rounds"], s["target_s"], {k: s["probe_s"] for k in gemm})
    peaks = round_peaks(times, s)
    block = times["block"]["s"]
    rows = {part: {"gflop": flops / 1e9,
                   "ms": pm.stats([t * 1e3 for t in times[part]["s"]]),
                   "gflops": pm.stats([gflops(flops, t) for t in times[part]["s"]]),
                   "peak_fraction": pm.stats([gflops(flops, t) / p
                                              for t, p in zip(times[part]["s"], peaks)]),
                   "share_of_block": pm.stats([t / b for t, b in zip(times[part]["s"], block)])}
            for part, (_, flops) in parts.items()}
    # Block time left after the GEMMs (token GEMMs include their transposes):
    # LayerNorm, bias, GELU, residual.
    rest = [b - t - c for b, t, c in zip(block, times["token GEMMs"]["s"],
                                         times["channel GEMMs"]["s"])]
    return {"variant": variant, "batch": batch, "blocks": config_of(variant)["num_blocks"],
            "parts": rows, "peak_gflops": pm.stats(peaks), "loads": loads,
            "non_gemm_ms": pm.stats([t * 1e3 for t in rest]),
            "non_gemm_share": pm.stats([t / b for t, b in zip(rest, block)])}


# Each section: settings, scratch folder -> result dict; a full run goes in this order.
SECTION_RUNNERS = {
    "gemm": section_gemm,
    "infer": lambda s, _: section_infer(s),
    "train": lambda s, _: section_train(s),
    "tflite": section_tflite,
    "convert": section_convert,
    "profile": lambda s, _: section_profile(s),
    "tokenmix": lambda s, _: section_tokenmix(s),
    "parts": lambda s, _: section_parts(s),
}
SECTIONS = tuple(SECTION_RUNNERS)


def machine():
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "?").strip()
        flags = fields.get("Flags", "").split()
        info["simd_flags"] = [f for f in flags if f.startswith(("avx", "fma", "amx"))]
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    import jax
    import keras
    import tensorflow as tf

    info.update(tensorflow=tf.__version__, keras=keras.__version__, jax=jax.__version__,
                numpy=np.__version__,
                TF_ENABLE_ONEDNN_OPTS=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default: on)"),
                TF_NUM_INTRAOP_THREADS=os.environ.get("TF_NUM_INTRAOP_THREADS", "(default)"),
                XLA_FLAGS=os.environ.get("XLA_FLAGS", ""))
    return info


def wait_idle(limit_s, threshold=1.0):
    start = time.time()
    while os.getloadavg()[0] >= threshold and time.time() - start < limit_s:
        time.sleep(15)
    return {"waited_s": round(time.time() - start), "load_at_start": os.getloadavg()}


def run(sections, quick=False, out_dir=RESULTS, wait_s=0):
    """Measures `sections`, merges them into out_dir/perf.json, writes perf.md."""
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"sections: expected a comma list of {SECTIONS}; got {sections!r}")
    s = QUICK if quick else FULL
    name = "perf_quick" if quick else "perf"
    json_path = os.path.join(out_dir, name + ".json")
    results = {}
    if os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)
    idle = wait_idle(wait_s)
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        for section in sections:
            start = time.time()
            print(f"[{section}] load {os.getloadavg()[0]:.2f}", flush=True)
            result = SECTION_RUNNERS[section](s, tmp)
            result.update(wall_s=round(time.time() - start, 1), idle=idle,
                          utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          command=" ".join(["python benchmarks/perf.py"] + sys.argv[1:]))
            results[section] = result
    os.makedirs(out_dir, exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out_dir, name + ".md"), "w") as f:
        f.write(perf_report.markdown(results))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma list of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes")
    parser.add_argument("--out", default=RESULTS, help="results folder")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite perf.md from perf.json (no measuring)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="wait up to S s for the 1-min load average to fall below 1")
    args = parser.parse_args(argv)
    if args.render:
        name = "perf_quick" if args.quick else "perf"
        with open(os.path.join(args.out, name + ".json")) as f:
            text = perf_report.markdown(json.load(f))
        with open(os.path.join(args.out, name + ".md"), "w") as f:
            f.write(text)
        return
    run([x for x in args.sections.split(",") if x], args.quick, args.out, args.wait_idle)


if __name__ == "__main__":
    main()
