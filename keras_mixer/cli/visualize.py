"""`keras-mixer visualize`: the paper's Figure 5 (token-mixing units) as a PNG."""

from keras_mixer.cli.common import WEIGHTS_HELP, path_arg, weights_arg


def add_parsers(subparsers):
    p = subparsers.add_parser(
        "visualize", help="draw the first token-mixing MLPs' units and the stem's filters (PNG)")
    p.add_argument("model", type=path_arg,
                   help="a .keras file (e.g. a training run's model.keras) or a variant (S/16, ...)")
    p.add_argument("--weights", type=path_arg,
                   help=WEIGHTS_HELP + " (for a variant; default: imagenet)")
    p.add_argument("-o", "--output", required=True, type=path_arg, help="OUT.png")
    p.add_argument("--blocks", type=int, nargs="+",
                   help="block indices (default: the first three)")
    p.add_argument("--units", type=int, help="hidden units per block (default: all)")
    p.add_argument("--stem-filters", type=int, default=64,
                   help="stem patch filters to draw (default: 64; 0: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run)


def _run(args):
    from keras_mixer.visualize import plot_token_mixing

    variant = not args.model.endswith(".keras")
    weights = weights_arg(args.weights, default="imagenet" if variant else None)
    info = plot_token_mixing(args.model, weights=weights, path=args.output, blocks=args.blocks,
                             units=args.units, stem_filters=args.stem_filters,
                             overwrite=args.overwrite)
    drawn = ", ".join("stem" if p["block"] is None else f"block {p['block']}"
                      for p in info["panels"])
    print(f"wrote {args.output} ({info['size'][0]}x{info['size'][1]}: {drawn})")
