"""The command line as a user meets it: quiet, light --help, --weights none."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from keras_mixer import cli

ENV = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}


def test_help_does_not_start_keras_or_tensorflow():
    code = ("import sys\nfrom keras_mixer.cli import build_parser\n"
            "text = build_parser().format_help()\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
            "print('examples:' in text)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         timeout=120).stdout.split()
    assert out == ["[]", "True"]


def test_commands_print_no_tensorflow_start_up_lines(tmp_path):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    command = [sys.executable, "-m", "keras_mixer.cli", "predict", str(tmp_path / "a.png"),
               "--model", "S/32", "--weights", "none", "--top", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no absl/oneDNN/CUDA lines
    assert done.stdout.splitlines()[0] == str(tmp_path / "a.png")
    assert len(done.stdout.splitlines()) == 3  # the path and two ranked classes
    # The user's own level wins: TensorFlow may speak again.
    loud = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(ENV, TF_CPP_MIN_LOG_LEVEL="0"))
    assert loud.returncode == 0 and loud.stderr != ""


def test_weights_none_is_explicit_random_init(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "missing.png"), "--model", "S/32",
                     "--weights", "none"]) == 2
    assert "images: no such file(s)" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", "S/32", "--weights", "none",
                     "--top", "1001"]) == 2
    assert "top: expected an int in [1, 1000]; got 1001" in capsys.readouterr().err


def test_exporting_a_variant_needs_explicit_weights(tmp_path, capsys):
    for fmt in ("tflite", "saved-model", "onnx"):
        out = str(tmp_path / ("m.tflite" if fmt == "tflite" else "m.onnx" if fmt == "onnx" else "m"))
        assert cli.main(["export", fmt, "S/16", "-o", out]) == 2
        assert "weights: exporting the variant 'S/16' needs --weights" in capsys.readouterr().err
