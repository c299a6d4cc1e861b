"""`keras-mixer export tflite|quantize|timm|saved-model|onnx|openvino|keras-hub|verify`: parse, then call
a plain function."""

import json
import sys

from keras_mixer.cli.common import WEIGHTS_HELP, path_arg, weights_arg

from keras_mixer.export import data as data_lib
from keras_mixer.export import tflite as tflite_lib
from keras_mixer.export.runtimes import OPENVINO_PRECISIONS
from keras_mixer.export.servers import DEFAULT_TOLERANCE
from keras_mixer.export.targets import TARGETS
from keras_mixer.export.verify import VerificationFailed


def add_parsers(subparsers):
    export = subparsers.add_parser(
        "export", help="TFLite for phones/edge; SavedModel, ONNX, OpenVINO for servers")
    sub = export.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    model_help = "a .keras file, or a variant name (S/16, B/16, ...) with --weights ('none': random init)"

    p = sub.add_parser("tflite", help="convert to .tflite (+ <model>.json sidecar metadata)")
    p.add_argument("model", type=path_arg, help=model_help)
    p.add_argument("-o", "--output", required=True, type=path_arg, help="OUT.tflite")
    p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
    p.add_argument("--quantize", default="none", help=f"one of {tflite_lib.QUANTIZE_MODES} (default: none)")
    p.add_argument("--target", default="cpu", help=f"one of {TARGETS} (default: cpu)")
    p.add_argument("--representative", default="default",
                   help=f"int8 calibration images: {data_lib.SOURCES} (default: the embedded digits)")
    p.add_argument("--data-dir", type=path_arg, help="tfds data dir for a tfds: --representative (default: tfds' own)")
    p.add_argument("--num-samples", type=int, default=tflite_lib.DEFAULT_SAMPLES,
                   help=f"calibration images (default: {tflite_lib.DEFAULT_SAMPLES})")
    p.add_argument("--io-dtype", default="float32",
                   help=f"int8 model input/output type: one of {tflite_lib.IO_DTYPES} (default: float32)")
    p.add_argument("--float-ops", default="",
                   help=f"int8: keep these ops in float, comma-separated presets "
                        f"{list(tflite_lib.FLOAT_OP_PRESETS)} or TFLite op names")
    p.add_argument("--labels", type=path_arg, help="'digits' or a text file with one class name per line")
    p.add_argument("--output-kind", help="probabilities or logits: what the model outputs (default: read from its graph; a sigmoid or unknown head is refused)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run_tflite)

    p = sub.add_parser("saved-model", help="SavedModel with serving signatures, NAME/VERSION/ layout")
    p.add_argument("model", type=path_arg, help=model_help)
    p.add_argument("-o", "--output", required=True, type=path_arg, help="NAME directory (the model goes to NAME/VERSION/)")
    p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
    p.add_argument("--version", type=int, default=1, help="version sub-directory (default: 1)")
    p.add_argument("--xla", action="store_true", help="compile the model's compute with XLA")
    p.add_argument("--precision", default="float32",
                   help="float32 or bfloat16 (bfloat16 matmuls, float32 weights and outputs; pays "
                        "on AVX512_BF16/AMX CPUs, GPUs, TPUs) (default: float32)")
    p.add_argument("--top-k", type=int,
                   help="labels per image of serve_bytes (default: 5, or the classes if fewer)")
    p.add_argument("--labels", type=path_arg, help="'digits' or a text file with one class name per line")
    p.add_argument("--output-kind", help="probabilities or logits: what the model outputs (default: read from its graph; a sigmoid or unknown head is refused)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing NAME/VERSION/")
    p.set_defaults(run=_run_saved_model)

    p = sub.add_parser("quantize", help="quantize a float .tflite with LiteRT Quantizer recipes")
    p.add_argument("float_tflite", type=path_arg, help="a float .tflite written by `export tflite` (with its sidecar)")
    p.add_argument("-o", "--output", required=True, type=path_arg, help="OUT.tflite")
    p.add_argument("--recipe", default="w8a8",
                   help="dynamic (int8 weights; CPU/GPU), w8a8 (int8; CPU/NPU) or w8a16 "
                        "(int16 activations; NPUs) (default: w8a8)")
    p.add_argument("--representative", default="default",
                   help=f"calibration images: {data_lib.SOURCES} (default: the embedded digits)")
    p.add_argument("--data-dir", type=path_arg, help="tfds data dir for a tfds: --representative")
    p.add_argument("--num-samples", type=int, default=tflite_lib.DEFAULT_SAMPLES,
                   help=f"calibration images (default: {tflite_lib.DEFAULT_SAMPLES})")
    p.add_argument("--float-ops", default="", help="ops kept float, comma-separated (RSQRT,...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run_quantize)

    p = sub.add_parser("timm", help="a timm repository directory (config.json + model.safetensors)")
    p.add_argument("model", type=path_arg, help=model_help)
    p.add_argument("-o", "--output", required=True, type=path_arg, help="the repository DIRECTORY")
    p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
    p.add_argument("--labels", type=path_arg,
                   help="'digits' or a text file with one class name per line, written as "
                        "label_names (default: a timm repository's own --weights label_names)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace config.json and model.safetensors in a non-empty DIRECTORY")
    p.set_defaults(run=_run_timm)

    for name, suffix, runtime in (("onnx", ".onnx", "ONNX Runtime"),
                                  ("openvino", ".xml", "OpenVINO (+ .bin beside it)")):
        p = sub.add_parser(name, help=f"{suffix} through Keras' exporter, checked in {runtime}")
        p.add_argument("model", type=path_arg, help=model_help)
        p.add_argument("-o", "--output", required=True, type=path_arg, help=f"OUT{suffix} (+ OUT.json sidecar)")
        p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
        p.add_argument("--labels", type=path_arg, help="'digits' or a text file with one class name per line")
        p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                       help=f"largest probability difference from Keras allowed on the check "
                            f"images (default: {DEFAULT_TOLERANCE})")
        p.add_argument("--output-kind", help="probabilities or logits: what the model outputs (default: read from its graph; a sigmoid or unknown head is refused)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        if name == "onnx":
            p.add_argument("--quantize", default="none",
                           help="none or int8 (ONNX Runtime static int8, QDQ; checked by the "
                                "int8 gate of `export verify`) (default: none)")
            p.add_argument("--representative", default="default",
                           help=f"int8 calibration images: {data_lib.SOURCES}; the gate runs on "
                                f"its held-out split (default: the embedded digits)")
            p.add_argument("--data-dir", type=path_arg,
                           help="tfds data dir for a tfds: --representative")
            p.add_argument("--num-samples", type=int, default=tflite_lib.DEFAULT_SAMPLES,
                           help=f"calibration images (default: {tflite_lib.DEFAULT_SAMPLES})")
            p.add_argument("--no-gate", action="store_true",
                           help="int8: write the file even if it misses the gate (as "
                                "`export verify --no-gate`); by default it is refused")
        p.set_defaults(run=_run_server_format, export_format=name)

    p = sub.add_parser("keras-hub", help="a keras-hub preset directory (ImageClassifier.from_preset)")
    p.add_argument("model", type=path_arg, help=model_help)
    p.add_argument("-o", "--output", required=True, type=path_arg, help="the preset DIRECTORY")
    p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest output difference from keras-mixer allowed on the check "
                        f"images (default: {DEFAULT_TOLERANCE})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing directory")
    p.set_defaults(run=_run_keras_hub)

    p = sub.add_parser("verify", help="run an exported file in its runtime against its Keras model")
    p.add_argument("tflite", metavar="FILE", type=path_arg,
                   help="the .tflite (LiteRT), .onnx (ONNX Runtime) or .xml (OpenVINO) file")
    p.add_argument("model", type=path_arg, help=model_help)
    p.add_argument("--weights", help=WEIGHTS_HELP + "; required with a variant")
    p.add_argument("--images", default="default",
                   help=f"held-out images: {data_lib.SOURCES} (default: embedded digits test split)")
    p.add_argument("--data-dir", type=path_arg, help="tfds data dir for tfds: --images (default: tfds' own)")
    p.add_argument("-n", "--count", type=int, default=100, help="images to compare (default: 100)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (default: 2)")
    p.add_argument("--precision", default="float32",
                   help=f"OpenVINO inference precision: one of {OPENVINO_PRECISIONS} "
                        f"(default: float32; default is the CPU's own, bfloat16 on AVX512_BF16)")
    p.add_argument("--no-gate", action="store_true",
                   help="only report; by default a file that misses its thresholds exits 1")
    p.add_argument("--min-top1", type=float,
                   help="least top-1 agreement with Keras (default: by the file's kind)")
    p.add_argument("--max-error", type=float,
                   help="largest abs output difference from Keras (default: by kind)")
    p.add_argument("--max-accuracy-drop", type=float,
                   help="largest accuracy loss against Keras on labelled images (default: by kind)")
    p.set_defaults(run=_run_verify)


def _run_tflite(args):
    report = tflite_lib.export_tflite(
        args.model, args.output, weights=_weights(args), quantize=args.quantize,
        target=args.target, representative=args.representative, num_samples=args.num_samples,
        io_dtype=args.io_dtype, float_ops=args.float_ops, labels=args.labels,
        data_dir=args.data_dir, overwrite=args.overwrite, output_kind=args.output_kind)
    contract = report["contract"]
    print(f"wrote {report['path']} ({report['bytes']:,} bytes) and {report['sidecar']}")
    print(f"input {contract['input']['dtype']} {contract['input']['shape']}, "
          f"output {contract['output']['dtype']} {contract['output']['shape']} "
          f"({contract['output']['kind']})")
    print("ops: " + ", ".join(f"{k} x{v}" for k, v in report["ops"].items()))
    xnn = report["xnnpack"]
    print(f"XNNPACK (CPU): {xnn['partitions']} partition(s), whole graph in one: {xnn['whole_graph']}")
    unsupported = ", ".join(report["unsupported"]) or "none"
    print(f"unsupported on {args.target}: {unsupported}")
    print("ops each accelerator would hold: " + ", ".join(
        f"{target} {r['ops']:.0%}" for target, r in report["residency"].items()))


def _run_saved_model(args):
    from keras_mixer.export.saved_model import export_saved_model

    path = export_saved_model(args.model, args.output, weights=_weights(args),
                              version=args.version, xla=args.xla, precision=args.precision,
                              top_k=args.top_k, labels=args.labels, overwrite=args.overwrite,
                              output_kind=args.output_kind)
    print(f"wrote {path} (signatures: serving_default, serve_uint8, serve_bytes; "
          f"XLA: {'on, compiles on first call per batch size' if args.xla else 'off'}; "
          f"compute: {args.precision})")


def _run_quantize(args):
    from keras_mixer.export.quantizer import quantize_tflite

    report = quantize_tflite(args.float_tflite, args.output, recipe=args.recipe,
                             representative=args.representative, num_samples=args.num_samples,
                             float_ops=args.float_ops, data_dir=args.data_dir,
                             overwrite=args.overwrite)
    out = report["output_error"]
    print(f"wrote {report['path']} ({report['bytes']:,} bytes), recipe {report['recipe']}")
    print(f"output vs the float file: SNR {out['snr_db']:.1f} dB, cosine {out['cosine']:.5f}")
    print("lowest-SNR layers: " + "; ".join(
        f"{w['tensor']} {w['snr_db']:.1f} dB" for w in report["worst_layers"]))
    xnn = report["xnnpack"]
    print(f"XNNPACK (CPU): {xnn['partitions']} partition(s), whole graph in one: {xnn['whole_graph']}")


def _run_timm(args):
    from keras_mixer.export.timm_format import export_timm

    report = export_timm(args.model, args.output, weights=_weights(args), labels=args.labels,
                         overwrite=args.overwrite)
    args_text = ", ".join(f"{k}={v}" for k, v in report["model_args"].items())
    print(f"wrote {report['path']}: " + ", ".join(report["files"]) +
          f" ({report['tensors']} tensors, {report['bytes']:,} bytes)")
    print(f"timm architecture {report['architecture']}" + (f" with {args_text}" if args_text else "")
          + f"; open it with timm.create_model('local-dir:{report['path']}', pretrained=True)")
    if report["gelu_form"] == "tanh":
        print("note: the model uses tanh GELU; timm computes exact GELU unless given "
              "act_layer=functools.partial(torch.nn.GELU, approximate='tanh')")


def _run_server_format(args):
    from keras_mixer.export import servers

    export = {"onnx": servers.export_onnx, "openvino": servers.export_openvino}[args.export_format]
    int8 = {}
    if args.export_format == "onnx":
        int8 = dict(quantize=args.quantize, representative=args.representative,
                    num_samples=args.num_samples, data_dir=args.data_dir,
                    gate=not args.no_gate)
    try:
        report = export(args.model, args.output, weights=_weights(args), labels=args.labels,
                        tolerance=args.tolerance, overwrite=args.overwrite,
                        output_kind=args.output_kind, **int8)
    except VerificationFailed as err:
        print(json.dumps(err.report, indent=1))
        print(f"keras-mixer export {args.export_format}: FAILED, nothing written: {err}",
              file=sys.stderr)
        return 1
    check, contract = report["check"], report["contract"]
    print(f"wrote {report['path']} ({report['bytes']:,} bytes) and {report['sidecar']}")
    print(f"input {contract['input']['name']!r} {contract['input']['shape']}, output "
          f"{contract['output']['name']!r} {contract['output']['shape']} ({contract['output']['kind']})")
    print(f"checked against Keras on {check['images']} images: max abs difference "
          f"{check['max_abs_error']:.3g} (probabilities), top-1 agreement {check['top1_agreement']:.3f}")
    if "verify" in report:
        gate, key = report["verify"], "onnx_accuracy"
        accuracy = ("" if gate["keras_accuracy"] is None else
                    f", accuracy {gate[key]:.3f} (Keras {gate['keras_accuracy']:.3f})")
        print(f"int8 gate on {gate['images']} held-out images: top-1 agreement "
              f"{gate['top1_agreement']:.3f}{accuracy}: "
              f"{'passed' if gate['gate']['passed'] else 'FAILED (--no-gate)'}")


def _run_keras_hub(args):
    from keras_mixer.export.hub import export_keras_hub

    report = export_keras_hub(args.model, args.output, weights=_weights(args),
                              tolerance=args.tolerance, overwrite=args.overwrite)
    print(f"wrote {report['path']}: " + ", ".join(report["files"]))
    check = report["check"]
    print(f"checked with keras_hub's from_preset on {check['images']} raw images: max abs "
          "difference " + ", ".join(f"{k} {v:.3g}" for k, v in check["max_abs_error"].items()))


def _run_verify(args):
    from keras_mixer.export.verify import verify

    thresholds = {key: value for key, value in (
        ("top1_agreement", args.min_top1), ("max_abs_error", args.max_error),
        ("accuracy_drop", args.max_accuracy_drop)) if value is not None}
    try:
        report = verify(args.tflite, args.model, weights=_weights(args), images=args.images,
                        count=args.count, num_threads=args.threads, precision=args.precision,
                        data_dir=args.data_dir, gate=not args.no_gate,
                        thresholds=thresholds or None)
    except VerificationFailed as err:
        print(json.dumps(err.report, indent=1))
        print(f"keras-mixer export verify: FAILED: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))


def _weights(args):
    """A variant is exported with the weights the user names: random weights are
    an explicit choice (--weights none), never a silent default."""
    if args.weights is None and not str(args.model).endswith(".keras"):
        raise ValueError(f"weights: exporting the variant {args.model!r} needs --weights "
                         f"(a tag, a file, or 'none' for random initialization); got none")
    return weights_arg(args.weights)
