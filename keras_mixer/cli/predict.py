"""`keras-mixer predict` and `keras-mixer convert`."""

from keras_mixer.cli.common import WEIGHTS_HELP, path_arg, weights_arg


def add_parsers(subparsers):
    p = subparsers.add_parser("predict", help="classify image files (top-k labels)")
    p.add_argument("images", nargs="+", type=path_arg, help="image files (JPEG, PNG, ...)")
    p.add_argument("--model", default="B/16", type=path_arg,
                   help="variant (B/16, ...) or a .keras file (default: B/16)")
    p.add_argument("--weights", type=path_arg, help=WEIGHTS_HELP + " (default for a variant: imagenet)")
    p.add_argument("--top", type=int, default=5, help="classes per image (default: 5)")
    p.add_argument("--labels", type=path_arg, help="text file with one class name per line, for custom heads")
    p.set_defaults(run=_run_predict)

    p = subparsers.add_parser("convert", help="authors' .npz checkpoint -> .keras or .weights.h5")
    p.add_argument("checkpoint", type=path_arg, help="authors' .npz file (e.g. Mixer-B_16.npz)")
    p.add_argument("-o", "--output", required=True, type=path_arg, help="OUT.keras or OUT.weights.h5")
    p.add_argument("--model", help="expected variant (checked against the file; inferred if omitted)")
    p.add_argument("--input-size", type=int,
                   help="image side; an integer multiple of the checkpoint's")
    p.add_argument("--no-top", dest="include_top", action="store_false", help="drop the head")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run_convert)


def _run_predict(args):
    from keras_mixer.inference import predict

    variant = not args.model.endswith(".keras")
    weights = weights_arg(args.weights, default="imagenet" if variant else None)
    results = predict(args.images, model=args.model, weights=weights, top=args.top,
                      labels=args.labels)
    for path, top in zip(args.images, results):
        print(path)
        for rank, (label, score) in enumerate(top, 1):
            print(f"  {rank}. {label:<40} {score:.4f}")


def _run_convert(args):
    from keras_mixer.inference import convert

    net = convert(args.checkpoint, args.output, model=args.model, input_size=args.input_size,
                  include_top=args.include_top, overwrite=args.overwrite)
    print(f"wrote {args.output} ({net.name}, {net.count_params():,} parameters)")
