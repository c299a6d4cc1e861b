"""keras-tuner search over the recipe on tiny data, and its best command:
running it trains with the tuned values and every other flag of the search."""

import json
import shlex

import pytest
from helpers import TINY

from keras_mixer import cli
from keras_mixer.training.trainer import TrainingPlan
from keras_mixer.training.tuning import TUNED_FIELDS, train_command, trial_variant, tune

QUICK = dict(image_size=16, epochs=1, batch_size=64, warmup_steps=0)
QUICK_FLAGS = ["--image-size", "16", "--epochs", "1", "--batch-size", "64", "--warmup-steps", "0"]


def check_ranking(result):
    trials = result["trials"]
    assert trials and all(t["status"] == "COMPLETED" for t in trials)
    assert len({t["trial_id"] for t in trials}) == len(trials)
    assert all(0.0 <= t["score"] <= 1.0 for t in trials)  # accuracy on the hold-out
    assert result["best"]["score"] == max(t["score"] for t in trials)
    assert result["best"]["trial_id"] == trials[0]["trial_id"]


def test_best_command_reproduces_a_finetune_search(tmp_path, tiny_checkpoint, capsys):
    # Issue 11: the command dropped --weights and every user flag, so a fine-tune
    # search printed a from-scratch command.
    weights, _ = tiny_checkpoint
    search = tmp_path / "search"
    argv = ["tune", "--model", json.dumps(TINY), "--weights", weights, *QUICK_FLAGS, "--seed", "3",
            "--randaugment", "none", "--algorithm", "bayesian", "--max-trials", "2",
            "--output-dir", str(search)]
    assert cli.main(argv) == 0
    best = json.loads((search / "best_config.json").read_text())
    check_ranking(dict(best=best, trials=json.loads((search / "results.json").read_text())))
    values = best["hyperparameters"]
    assert set(values) == set(TUNED_FIELDS)  # pretrained: no width or depth search
    assert 0.003 <= values["learning_rate"] <= 0.3  # the finetune recipe's 0.03 x/÷ 10
    printed = capsys.readouterr().out
    assert best["command"] in printed and "searching (bayesian) the finetune recipe on default" in printed
    # Run the printed command as a user would (plus an output dir).
    command = shlex.split(best["command"])
    assert command[:2] == ["keras-mixer", "train"]
    assert cli.main(command[1:] + ["--output-dir", str(tmp_path / "best")]) == 0
    run = json.loads((tmp_path / "best" / "run_config.json").read_text())
    assert (run["model"], run["weights"], run["recipe"], run["seed"]) == (TINY, weights, "finetune", 3)
    assert {k: run["hparams"][k] for k in TUNED_FIELDS} == values  # exact, not rounded
    assert {k: run["hparams"][k] for k in QUICK} == QUICK and run["hparams"]["randaugment"] is False


@pytest.mark.large  # a minute of the default run; `python -m pytest -m large`
def test_hyperband_from_scratch_searches_width_and_depth(tmp_path):
    result = tune(model=TINY, recipe="finetune", overrides=dict(QUICK, epochs=2),
                  output_dir=str(tmp_path / "hb"), algorithm="hyperband", verbose=0)
    check_ranking(result)
    values = result["best"]["hyperparameters"]
    assert {"hidden_dim", "num_blocks", *TUNED_FIELDS} <= set(values)
    command = shlex.split(result["best"]["command"])
    # The best trial's architecture, not the starting one, is what the command trains.
    model = json.loads(command[command.index("--model") + 1])
    assert model == trial_variant(TINY, values["num_blocks"], values["hidden_dim"])
    assert command[command.index("--epochs") + 1] == "2"


def test_train_command_keeps_every_flag():
    plan = TrainingPlan(model="B/16", variant="B/16", config={}, weights="imagenet",
                        source=None, dataset="tfds:cifar10", data_dir="/data/my tfds",
                        recipe="finetune", hparams={})
    command = train_command(plan, dict(learning_rate=0.012345678901234, weight_decay=0.0),
                            overrides=dict(epochs=9, batch_size=None, image_size=448,
                                           learning_rate=0.05, randaugment=(2, 15)),
                            seed=7, strategy="mirrored")
    assert shlex.split(command) == [
        "keras-mixer", "train", "--model", "B/16", "--weights", "imagenet", "--dataset",
        "tfds:cifar10", "--data-dir", "/data/my tfds", "--recipe", "finetune", "--epochs", "9",
        "--image-size", "448", "--learning-rate", "0.012345678901234", "--randaugment", "2,15",
        "--weight-decay", "0.0", "--strategy", "mirrored", "--seed", "7"]
    args = cli.build_parser().parse_args(shlex.split(command)[1:])  # the CLI reads it back
    assert (args.learning_rate, args.data_dir, args.image_size) == (0.012345678901234, "/data/my tfds", 448)


def test_trial_variant_scales_mlps():
    assert trial_variant(TINY, 4, 32) == dict(TINY, num_blocks=4, hidden_dim=32, tokens_mlp_dim=16,
                                              channels_mlp_dim=64)


def test_bad_arguments():
    with pytest.raises(ValueError, match="algorithm: expected one of \\['hyperband', 'bayesian'\\]; got 'grid'"):
        tune(algorithm="grid")
    with pytest.raises(ValueError, match="max_trials: expected an int > 0; got 0"):
        tune(max_trials=0)
    with pytest.raises(ValueError, match="holdout: expected a fraction in \\(0, 1\\); got 1.5"):
        tune(holdout=1.5)
