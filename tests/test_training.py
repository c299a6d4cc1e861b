"""`train`, `evaluate` and `keras-mixer train` on tiny configs: outputs, re-runs,
refusals, fine-tuning from a checkpoint, mixed precision, XLA, and a run killed
with SIGKILL that resumes with its epoch count intact."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import TINY, TINY_TOKENS

import reference
from keras_mixer import cli
from keras_mixer.training import evaluate, train
from keras_mixer.training.strategy import global_batch_size

# One short epoch of the tiny Mixer on the 16x16 digits.
QUICK = dict(image_size=16, epochs=1, batch_size=64, warmup_steps=0)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def quick_train(out, **kwargs):
    kwargs.setdefault("overrides", QUICK)
    return train(model=TINY, output_dir=str(out), verbose=0, **kwargs)


def test_outputs_rerun_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = quick_train(out)
    for name in ("model.keras", "best.weights.h5", "log.csv", "metrics.json", "curves.png",
                 "run_config.json"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()  # BackupAndRestore cleans up after a finished run
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["epochs"] == 1 and metrics["num_test"] == 360 and metrics["replicas"] == 1
    # The same run again: nothing is trained, the finished metrics come back.
    capsys.readouterr()
    assert quick_train(out) == metrics
    assert "already finished" in capsys.readouterr().out
    # evaluate() on the saved model agrees with the run's own test evaluation.
    result = evaluate(str(out / "model.keras"), dataset="default", batch_size=100)
    assert result["images"] == 360
    assert result["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert result["top5"] == pytest.approx(metrics["test_top5"], abs=1e-6)


def test_resume_refuses_another_model_config(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps(dict(
        model=dict(TINY, hidden_dim=32), weights=None, dataset="default", data_dir=None,
        recipe="default", hparams={}, precision="float32", global_batch=64, seed=0,
        strategy="auto", jit_compile=False)))
    with pytest.raises(ValueError, match="holds a run with a different configuration .*model: .*"
                                         "'hidden_dim': 32.* there, .*'hidden_dim': 16.* now.*--overwrite"):
        quick_train(out)
    assert not (out / "log.csv").exists()  # refused before any work
    quick_train(out, overwrite=True)  # --overwrite starts over
    assert (out / "metrics.json").exists()


def test_bad_input_is_refused_before_work(tmp_path):
    out = tmp_path / "never"
    cases = [
        (dict(strategy="gpu"), "strategy: expected one of .*'mirrored'.*got 'gpu'"),
        (dict(dataset="imagenet"), "dataset: expected one of .*got 'imagenet'"),
        (dict(precision="fp8"), "precision: expected one of .*got 'fp8'"),
        (dict(recipe="sota"), "recipe: expected one of .*got 'sota'"),
        (dict(overrides={"epochs": 0}), "epochs: expected an int > 0; got 0"),
        (dict(overrides={"image_size": 18}), "image_size: must be a multiple of the patch size 4; got 18"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            quick_train(out, **kwargs)
    # --weights incompatible with --model: the builder's own message, before any work.
    with pytest.raises(ValueError, match="weights: 'imagenet' is not available for Mixer S/32"):
        train(model="S/32", weights="imagenet", output_dir=str(out))
    with pytest.raises(ValueError, match="variant: expected one of"):
        train(model="X/9", output_dir=str(out))
    assert not out.exists()
    with pytest.raises(ValueError, match="weights: evaluating variant 'B/16' needs pretrained weights"):
        evaluate("B/16")
    with pytest.raises(ValueError, match="split: expected one of \\['test', 'train'\\]; got 'val'"):
        evaluate("B/16", weights="imagenet", split="val")
    with pytest.raises(ValueError, match="batch_size: the global batch must be divisible by the 4 "
                                         "replicas; got 30"):
        global_batch_size(30, 4)
    assert global_batch_size(8, 4, per_replica=True) == 32


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    code = cli.main(["train", "--model", "B/32", "--weights", "imagenet",
                     "--output-dir", str(tmp_path / "x")])
    assert code == 2
    assert "keras-mixer train: error: weights: 'imagenet' is not available for Mixer B/32" in capsys.readouterr().err
    assert cli.main(["train", "--model", "{not json", "--output-dir", str(tmp_path)]) == 2
    assert "model: expected a variant or a JSON config dict" in capsys.readouterr().err


def test_finetune_from_checkpoint_new_head(tmp_path):
    # A 7-class checkpoint fine-tuned on the 10 digits: backbone loaded, fresh head.
    params = reference.random_checkpoint(
        np.random.default_rng(0), TINY["num_blocks"], TINY["patch_size"], TINY["hidden_dim"],
        TINY["tokens_mlp_dim"], TINY["channels_mlp_dim"], tokens=TINY_TOKENS, classes=7)
    np.savez(tmp_path / "tiny.npz", **params)
    out = tmp_path / "ft"
    metrics = train(model=TINY, weights=str(tmp_path / "tiny.npz"), output_dir=str(out),
                    overrides=dict(image_size=16, epochs=1, batch_size=64, learning_rate=1e-9),
                    verbose=0)
    assert json.loads((out / "run_config.json").read_text())["recipe"] == "finetune"
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 10)
    # A learning rate of 1e-9: the backbone still holds the checkpoint's stem.
    np.testing.assert_allclose(model.get_layer("stem").kernel.numpy(), params["stem/kernel"], atol=1e-5)
    assert metrics["test_accuracy"] >= 0


def test_recipe_optimizers_and_schedules():
    from keras_mixer.training.recipes import get_recipe
    from keras_mixer.training.schedules import WarmupSchedule
    from keras_mixer.training.trainer import make_optimizer

    opt = make_optimizer(get_recipe("finetune"), total_steps=1000)
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.momentum == 0.9 and opt.global_clipnorm == 1.0 and not opt.weight_decay
    assert opt.get_config()["learning_rate"]["config"] == dict(
        peak=0.03, warmup_steps=500, total_steps=1000, decay="cosine")
    pre = make_optimizer(get_recipe("pretrain"), total_steps=100_000)
    assert isinstance(pre, keras.optimizers.AdamW) and pre.weight_decay == 0.1
    assert pre.get_config()["learning_rate"]["config"]["decay"] == "linear"
    cosine = WarmupSchedule(0.03, 500, 1000, "cosine")
    assert [round(float(cosine(s)), 6) for s in (0, 250, 500, 750, 1000)] == [0, 0.015, 0.03, 0.015, 0]
    linear = WarmupSchedule(1e-3, 10_000, 100_000, "linear")
    assert float(linear(5_000)) == pytest.approx(5e-4) and float(linear(55_000)) == pytest.approx(5e-4)


@pytest.mark.parametrize("precision, jit", [("mixed_bfloat16", False), ("float32", True)])
def test_mixed_precision_and_xla_steps(tmp_path, precision, jit):
    metrics = quick_train(tmp_path / "run", precision=precision, jit_compile=jit)
    assert np.isfinite(metrics["test_loss"]) and not metrics["nan_stopped"]
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.get_layer("stem").dtype_policy.name == precision
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards


def test_sigkill_resume_keeps_epoch_count(tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "keras_mixer.cli", "train", "--model", json.dumps(TINY),
               "--image-size", "16", "--epochs", "6", "--batch-size", "16", "--warmup-steps", "0",
               "--output-dir", str(out)]
    metadata = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not metadata.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    assert metadata.exists() and not (out / "metrics.json").exists(), "killed too late"
    done = json.loads(metadata.read_text())["epoch"]
    assert 1 <= done < 6
    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from the backup after epoch" in rerun.stdout
    epochs = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(6))  # each epoch exactly once
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and metrics["epochs_this_session"] < 6


def test_cli_flags_become_recipe_overrides():
    from keras_mixer.cli.train import _overrides

    args = cli.build_parser().parse_args(
        ["train", "--epochs", "3", "--learning-rate", "0.1", "--randaugment", "2,15"])
    overrides = _overrides(args)
    assert overrides["epochs"] == 3 and overrides["learning_rate"] == 0.1
    assert overrides["randaugment"] == (2, 15.0) and overrides["batch_size"] is None
    args = cli.build_parser().parse_args(["tune", "--randaugment", "none"])
    assert _overrides(args)["randaugment"] is False  # off, not "keep the recipe's"
    with pytest.raises(ValueError, match="randaugment: expected 'OPS,MAGNITUDE' or 'none'; got 'lots'"):
        _overrides(cli.build_parser().parse_args(["train", "--randaugment", "lots"]))
