"""`keras-mixer`: argument parsing only; every command calls a library function.

    keras-mixer predict | convert          keras_mixer.cli.predict
    keras-mixer train | evaluate | tune    keras_mixer.cli.train
    keras-mixer export tflite | ...        keras_mixer.cli.export
    keras-mixer visualize                  keras_mixer.cli.visualize

Library modules are imported inside each command's `run`, so `--help` does not
start TensorFlow.
"""

import argparse
import importlib.util
import os
import sys
import tempfile

from keras_mixer.cli import export, predict, train, visualize

EXAMPLES = """examples:
  keras-mixer train                                  # small Mixer on the embedded digits
  keras-mixer predict cat.jpg --model B/16 --weights imagenet
  keras-mixer train --model B/16 --weights imagenet --dataset folder:flowers/
  keras-mixer export tflite runs/default/model.keras -o mixer.tflite --quantize int8
  keras-mixer COMMAND --help                         # the options of one command
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-mixer", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="MLP-Mixer for Keras 3: predict, convert, train, tune, export, visualize.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (predict, train, export, visualize):
        module.add_parsers(subparsers)
    return parser


def quiet_tensorflow():
    """Silences TensorFlow's C++ start-up lines (oneDNN, CUDA probing, absl's
    pre-initialization notice) unless the user set TF_CPP_MIN_LOG_LEVEL.

    Some of those lines are written before TensorFlow reads the level, so the
    import itself runs with stderr captured; they are replayed if it fails.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or \
            importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow()
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, OSError) as err:
        # Argument and file errors are for the user, not a traceback.
        print(f"keras-mixer {args.command}: error: {err}", file=sys.stderr)
        return 2


