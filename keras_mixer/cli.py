"""`keras-mixer`: one entry point, one module per group of subcommands.

Each module in `COMMAND_MODULES` has `add_parsers(subparsers)`, which adds its
subcommands and sets `run` on each; `run(args)` calls a plain function that
the tests call directly. This is the only place that wires `keras_mixer` and
`export` together.
"""

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "keras_mixer.commands",  # predict, convert
    "export.commands",  # export tflite|saved-model|verify
    "keras_mixer.training.commands",  # train, evaluate, tune
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-mixer",
        description="MLP-Mixer for Keras 3: predict, convert, train, tune, export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, OSError) as err:
        # Argument and file errors are for the user, not a traceback.
        print(f"keras-mixer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
