"""Server runtimes side by side: XLA SavedModel, ONNX Runtime, OpenVINO, LiteRT.

One random-init Mixer per variant (the same weights in every file) is
exported by keras-mixer to each format, each file checked against Keras in its
own runtime, then every runtime is timed on the same float32 batch in
interleaved rounds beside the GEMM probes: images/s, fraction of that round's
float32 GEMM peak, and ratio to the fastest runtime of the row.

  xla_f32, xla_bf16      SavedModel serving_default, XLA, float32 / bfloat16 compute
  graph_f32, graph_bf16  the same without XLA (TF graph mode; S/16 only, for time)
  onnxruntime            .onnx, ONNX Runtime CPU provider
  onnxruntime_int8       .onnx static int8 (QDQ, `export onnx --quantize int8`),
                         calibrated on the digits; random weights make its
                         accuracy gate meaningless, so it is reported, not enforced
  openvino_f32           .xml, OpenVINO CPU pinned to float32
  openvino_default       .xml, OpenVINO CPU at its own precision (bfloat16 on
                         AVX512_BF16/AMX CPUs, float32 elsewhere: recorded, and
                         not timed twice where it is openvino_f32's float32)
  litert_fp32            .tflite float32, XNNPACK, batch-1 file called per image
  litert_dynamic         .tflite dynamic-range int8 (quantized weights: not the
                         same numbers, shown as the phone path's CPU speed)
Every runtime gets all the machine's cores. The .tflite files are converted
in child processes (`isolate=True`: the converter's memory goes with them).
"""

import os
import tempfile
import time

import numpy as np

from . import harness

RUNTIMES = ("xla_f32", "xla_bf16", "graph_f32", "graph_bf16", "onnxruntime", "onnxruntime_int8",
            "openvino_f32",
            "openvino_default", "litert_fp32", "litert_dynamic")
FULL = dict(variants=("S/16", "B/16"), graph=("S/16",), batches=(1, 8), size=224, rounds=7,
            n=harness.GEMM_N)
# Calibration images of the int8 file (the digits; random weights need no more).
INT8_SAMPLES = 50
QUICK = dict(variants=("quick",), graph=("quick",), batches=(1, 2), size=32, rounds=2, n=256)


def run(*, quick=False):
    s = QUICK if quick else FULL
    threads = os.cpu_count()
    rows, exports = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        probes = harness.gemm_probes(s["n"])
        for variant in s["variants"]:
            runners, exports[variant] = _export_all(variant, s["size"], tmp, threads,
                                                    graph=variant in s["graph"])
            rows += [_row(variant, batch, runners, probes, s) for batch in s["batches"]]
    return {"size": s["size"], "threads": threads, "rows": rows, "exports": exports}


def _export_all(variant, size, tmp, threads, *, graph):
    """({runtime: fn(images) -> outputs}, {runtime: export facts}) for one model."""
    from keras_mixer.export import runtimes, servers
    from keras_mixer.export.saved_model import export_saved_model
    from keras_mixer.export.tflite import export_tflite

    model = harness.build(variant, size, classifier_activation="softmax")
    # The head starts at zero (every image the same answer), which any file
    # would match: a random one makes the export checks mean something.
    head = model.get_layer("head")
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape))
    tag = os.path.join(tmp, str(variant).replace("/", ""))
    runners, facts = {}, {}

    def timed(name, fn):
        start = time.perf_counter()
        facts[name] = {"export_s": 0.0, **(fn() or {})}
        facts[name]["export_s"] = round(time.perf_counter() - start, 1)

    for xla in (True, False) if graph else (True,):
        for precision in ("float32", "bfloat16"):
            name = f"{'xla' if xla else 'graph'}_{'f32' if precision == 'float32' else 'bf16'}"
            timed(name, lambda: runners.update({name: _saved_model(
                export_saved_model(model, f"{tag}_{name}", xla=xla, precision=precision))}))
    timed("onnxruntime", lambda: _check(servers.export_onnx(model, f"{tag}_onnx.onnx")))
    runners["onnxruntime"] = runtimes.open_runtime(f"{tag}_onnx.onnx", num_threads=threads).predict
    timed("onnxruntime_int8", lambda: _check_int8(servers.export_onnx(
        model, f"{tag}_int8.onnx", quantize="int8", num_samples=INT8_SAMPLES, gate=False)))
    runners["onnxruntime_int8"] = runtimes.open_runtime(f"{tag}_int8.onnx",
                                                        num_threads=threads).predict
    timed("openvino_f32", lambda: _check(servers.export_openvino(model, f"{tag}_openvino.xml")))
    for name, precision in (("openvino_f32", "float32"), ("openvino_default", "default")):
        ov = runtimes.open_runtime(f"{tag}_openvino.xml", num_threads=threads, precision=precision)
        facts.setdefault(name, {})["inference_precision"] = ov.inference_precision
        if name == "openvino_f32" or ov.inference_precision != "f32":
            runners[name] = ov.predict
    for name, quantize in (("litert_fp32", "none"), ("litert_dynamic", "dynamic")):
        timed(name, lambda: {"xnnpack_partitions": export_tflite(
            model, f"{tag}_{quantize}.tflite", quantize=quantize,
            isolate=True)["xnnpack"]["partitions"]})
        runners[name] = runtimes.LiteModel(f"{tag}_{quantize}.tflite", num_threads=threads).predict
    return runners, facts


def _saved_model(path):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda x: serve(images=tf.constant(x))["probabilities"].numpy()


def _check(report):
    return {"bytes": report["bytes"], "max_abs_error": report["check"]["max_abs_error"]}


def _check_int8(report):
    gate = report["verify"]
    return {"bytes": report["bytes"], "top1_agreement": gate["top1_agreement"]}


def _row(variant, batch, runners, probes, s):
    x = harness.images(batch, s["size"])
    fns = {name: (lambda f=f: f(x)) for name, f in runners.items()}
    first = {name: harness.seconds(fn) for name, fn in fns.items()}  # XLA compiles here
    times = harness.interleaved({**fns, **probes}, rounds=s["rounds"], warmup=0)
    flops = harness.model_flops(harness.config_of(variant), s["size"]) * batch
    modes, peak = harness.rates(times, flops=flops, batch=batch, n=s["n"])
    best = max(modes, key=lambda name: modes[name]["images_s"]["median"])
    for name, mode in modes.items():
        mode["first_call_s"] = round(first[name], 2)
        mode["vs_best"] = harness.ratios(times[best], times[name])
    return {"variant": variant, "batch": batch, "gflop_per_image": flops / batch / 1e9,
            "modes": modes, "best": best, "peak_gflops": peak}


def render(data):
    out = [f"# Server runtimes at {data['size']}x{data['size']}: images/s, fraction of the "
           f"GEMM peak, ratio to the best\n",
           f"Every runtime on {data['threads']} threads, the same random-init weights, the "
           "same float32 batch, interleaved rounds. Cells: images/s median [min-max], the "
           "median fraction of that round's float32 GEMM peak, and the median per-round "
           "ratio to the row's fastest runtime. `litert_dynamic` has int8 weights, "
           "`onnxruntime_int8` int8 weights and activations.\n"]
    for variant in dict.fromkeys(r["variant"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["variant"] == variant]
        names = [n for n in RUNTIMES if n in rows[0]["modes"]]
        out.append(f"\n{variant} ({rows[0]['gflop_per_image']:.1f} GFLOP/image); float32 GEMM "
                   "peak GFLOP/s: " + ", ".join(f"batch {r['batch']} {harness.fmt(r['peak_gflops'], 0)}"
                                               for r in rows) + "\n")
        header = ["runtime"] + [f"batch {r['batch']}: {c}" for r in rows
                                for c in ("images/s", "of peak", "x best")]
        out += harness.table(header, [[n] + [
            cell for r in rows for cell in (
                harness.fmt(r["modes"][n]["images_s"]),
                f"{r['modes'][n]['peak_fraction']['median']:.0%}",
                f"{r['modes'][n]['vs_best']['median']:.2f}")] for n in names])
        out.append("\nFastest: " + ", ".join(f"batch {r['batch']} {r['best']}" for r in rows) + ".")
        same = [n for n in RUNTIMES if n not in names and n in data["exports"].get(variant, {})]
        if same:
            out.append(f"Not timed: {', '.join(same)} (it runs float32 on this CPU: "
                       "the same as openvino_f32).")
    out.append("\nExports (seconds to export and check; max abs difference from Keras on "
               "probabilities in the runtime; OpenVINO's chosen precision; XNNPACK partitions):")
    for variant, facts in data["exports"].items():
        parts = []
        for name, f in facts.items():
            extra = [f"{f['export_s']} s"] if "export_s" in f else []
            extra += [f"diff {f['max_abs_error']:.1e}"] if "max_abs_error" in f else []
            extra += [f"top-1 agreement {f['top1_agreement']:.2f} (random weights)"] \
                if "top1_agreement" in f else []
            extra += [f"runs {f['inference_precision']}"] if "inference_precision" in f else []
            extra += [f"{f['xnnpack_partitions']} partition(s)"] if "xnnpack_partitions" in f else []
            parts.append(f"{name} {', '.join(extra)}")
        out.append(f"- {variant}: " + "; ".join(parts))
    return "\n".join(out + [harness.footer(data)])
