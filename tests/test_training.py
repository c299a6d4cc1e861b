"""`train`, `evaluate` and `keras-mixer train` on tiny configs: outputs, re-runs,
refusals, fine-tuning from a checkpoint, mixed precision, XLA, rebuilding a
run's model, recipes picked for the data, and the command line's output.
Kills and resumes: test_training_faults.py."""

import argparse
import json
import re

import keras
import numpy as np
import pytest
from helpers import TINY, TINY_TOKENS

import keras_mixer
import reference
from keras_mixer.precision import Precision
from keras_mixer import cli
from keras_mixer.training import evaluate, load_run, train
from keras_mixer.training.strategy import global_batch_size

# One short epoch of the tiny Mixer on the 16x16 digits.
QUICK = dict(image_size=16, epochs=1, batch_size=64, warmup_steps=0)


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
        # One vocabulary: Keras' policy name is not a precision here.
        (dict(precision="mixed_bfloat16"), "precision: expected one of .*'bfloat16'.*got 'mixed_bfloat16'"),
        (dict(recipe="sota"), "recipe: expected one of .*got 'sota'"),
        (dict(overrides={"epochs": 0}), "epochs: expected an int > 0; got 0"),
        (dict(overrides={"image_size": 18}), "image_size: must be a multiple of the patch size 4; got 18"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            quick_train(out, **kwargs)
    # --weights incompatible with --model: the builder's own message, before any work.
    with pytest.raises(ValueError, match="weights: 'imagenet21k' is not available for Mixer S/32"):
        train(model="S/32", weights="imagenet21k", output_dir=str(out))
    with pytest.raises(ValueError, match="variant: expected one of"):
        train(model="X/9", output_dir=str(out))
    assert not out.exists()
    with pytest.raises(ValueError, match="weights: evaluating variant 'B/16' needs weights named"):
        evaluate("B/16")
    with pytest.raises(ValueError, match="split: expected one of \\['test', 'train'\\]; got 'val'"):
        evaluate("B/16", weights="imagenet", split="val")
    with pytest.raises(ValueError, match="batch_size: the global batch must be divisible by the 4 "
                                         "replicas; got 30"):
        global_batch_size(30, 4)
    assert global_batch_size(8, 4, per_replica=True) == 32


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    code = cli.main(["train", "--model", "B/32", "--weights", "imagenet21k",
                     "--output-dir", str(tmp_path / "x")])
    assert code == 2
    assert "keras-mixer train: error: weights: 'imagenet21k' is not available for Mixer B/32" in capsys.readouterr().err
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
    # A learning rate of 1e-9: the backbone still holds the checkpoint's stem, and
    # the fresh zero-initialised head still predicts 1/10 for every class.
    np.testing.assert_allclose(model.get_layer("stem").kernel.numpy(), params["stem/kernel"], atol=1e-5)
    assert metrics["test_loss"] == pytest.approx(np.log(10), abs=1e-4)
    # load_run rebuilds the fine-tuned model (new head included) from the directory.
    rebuilt = load_run(str(out))
    x = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


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


@pytest.mark.parametrize("precision, jit", [("bfloat16", False), ("float32", True)])
def test_mixed_precision_and_xla_steps(tmp_path, precision, jit):
    metrics = quick_train(tmp_path / "run", precision=precision, jit_compile=jit)
    assert np.isfinite(metrics["test_loss"]) and not metrics["nan_stopped"]
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.get_layer("stem").dtype_policy.name == Precision(precision).keras_policy
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards


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


# The README's custom-model command (issue 11): a config dict on the digits.
README_CUSTOM = dict(num_blocks=6, patch_size=4, hidden_dim=128, tokens_mlp_dim=64, channels_mlp_dim=256)


def test_a_custom_model_on_the_digits_gets_the_small_recipe():
    from keras_mixer.training.trainer import check_arguments

    def recipe(model, weights=None, dataset="default"):
        return check_arguments(model, weights, dataset, None, None, {"epochs": 40}, "auto", "float32")

    plan = recipe(README_CUSTOM)  # was "pretrain": batch 4096 at 224 px, more than the 1,437 images
    assert plan.recipe == "default" and plan.hparams["batch_size"] == 64
    assert plan.hparams["image_size"] == 32 and plan.hparams["epochs"] == 40
    assert recipe("S/16").recipe == "default"  # any model from scratch on the digits
    assert recipe("S/16", dataset="folder:.").recipe == "pretrain"
    assert recipe(README_CUSTOM, dataset="folder:.").recipe == "pretrain"


@pytest.mark.large
def test_readme_custom_model_command(tmp_path):
    # As written in the docs: 40 epochs of a 6-block Mixer (minutes on 2 cores).
    code = cli.main(["train", "--model", json.dumps(README_CUSTOM), "--epochs", "40",
                     "--output-dir", str(tmp_path / "custom")])
    assert code == 0
    assert json.loads((tmp_path / "custom" / "metrics.json").read_text())["test_accuracy"] > 0.9


def test_cli_summary_progress_lines_and_tilde(tmp_path, capsys, monkeypatch):
    # A config dict on the digits, as the README's custom command (one epoch of
    # the tiny model); --output-dir=~/... (the shell leaves a ~ after = alone)
    # lands in the home directory.
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["train", "--model", json.dumps(TINY), "--epochs", "1", "--image-size", "16",
            "--output-dir=~/custom"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    config = json.loads((tmp_path / "custom" / "run_config.json").read_text())
    assert config["recipe"] == "default" and config["architecture"] == TINY
    summary = [line for line in out.splitlines() if line.startswith("training ")]
    assert len(summary) == 1, out
    params = keras_mixer.Mixer(TINY, input_shape=(16, 16, 3), classes=10).count_params()
    assert f"({params:,} parameters, 16 px) on default: 1,437 training and 360 test images; " \
           f"DefaultDistributionStrategy, 1 replica, global batch 64, 1 epochs" in summary[0]
    # Not a terminal: one line per epoch (Keras verbose=2), no progress-bar redraws.
    assert re.search(r"^22/22 - \d+s - .*val_accuracy: 0\.\d{4}", out, re.M), out
    assert "\r" not in out and "\x08" not in out and "\u2501" not in out


@pytest.mark.parametrize("flag, value", [("--learning-rate", "inf"), ("--weight-decay", "inf"),
                                         ("--learning-rate", "nan"), ("--weight-decay", "-inf")])
def test_infinite_and_nan_rates_are_refused_up_front(tmp_path, capsys, flag, value):
    # Issue 14.10: inf trained to NaN and recorded the run as finished.
    out = tmp_path / "never"
    assert cli.main(["train", f"{flag}={value}", "--output-dir", str(out)]) == 2
    field = flag[2:].replace("-", "_")
    assert f"{field}: expected a finite number" in capsys.readouterr().err
    assert f"got {float(value)!r}" in str(pytest.raises(ValueError, train, output_dir=str(out),
                                                        overrides={field: float(value)}).value)
    assert not out.exists()


def test_evaluate_random_weights_only_on_purpose(tmp_path, capsys):
    # A variant without weights is refused; None (--weights none) is the random
    # initialisation, which then meets the dataset's class check.
    with pytest.raises(ValueError, match="weights: evaluating variant 'S/32' needs weights named: .*"
                                         "None for random initialisation \\(--weights none\\); got no weights"):
        evaluate("S/32")
    assert cli.main(["evaluate", "S/32"]) == 2
    assert "--weights none" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dataset: 'default' has 10 classes; the model has 1000 outputs"):
        evaluate(TINY, weights=None)
    assert cli.main(["evaluate", json.dumps(TINY), "--weights", "none"]) == 2
    assert "the model has 1000 outputs" in capsys.readouterr().err
    # The tfds directory is checked before the checkpoint would be downloaded.
    with pytest.raises(FileNotFoundError, match="'mnist' is not prepared in"):
        evaluate("B/16", weights="imagenet", dataset="tfds:mnist", data_dir=str(tmp_path))


def test_every_flag_has_help():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("train", "evaluate", "tune"):
        for action in commands[name]._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings)


def test_load_run_best_and_last(tmp_path):
    out = tmp_path / "run"
    metrics = quick_train(out, overrides=dict(QUICK, epochs=2))
    best, last = load_run(str(out)), load_run(str(out), weights="last")
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    column = rows[0].index("val_accuracy")
    best_epoch = max(range(2), key=lambda e: float(rows[1 + e][column]))
    assert evaluate(best, batch_size=100)["top1"] == pytest.approx(float(rows[1 + best_epoch][column]), abs=1e-6)
    assert evaluate(last, batch_size=100)["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="weights: expected 'best' or 'last'; got 'first'"):
        load_run(str(out), weights="first")
    with pytest.raises(FileNotFoundError, match="output_dir: no run_config.json in"):
        load_run(str(tmp_path))
