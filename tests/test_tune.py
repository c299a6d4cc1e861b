"""keras-tuner search over the fine-tuning recipe on tiny data."""

import json

import pytest
from helpers import TINY

from keras_mixer.training.tuning import tune, trial_variant

QUICK = dict(image_size=16, epochs=1, batch_size=64, warmup_steps=0)


def test_bayesian_two_trials_write_results(tmp_path):
    out = tmp_path / "search"
    result = tune(model=TINY, recipe="finetune", overrides=QUICK, output_dir=str(out),
                  algorithm="bayesian", max_trials=2, verbose=0)
    trials = json.loads((out / "results.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    best = json.loads((out / "best_config.json").read_text())
    assert best == result["best"] and best["score"] == max(t["score"] for t in trials)
    space = set(best["hyperparameters"])
    assert {"learning_rate", "weight_decay", "drop_path_rate", "label_smoothing"} <= space
    assert {"hidden_dim", "num_blocks"} <= space  # from scratch: width and depth too
    assert 0.003 <= best["hyperparameters"]["learning_rate"] <= 0.3  # recipe's 0.03 x/÷ 10
    assert best["command"].startswith("keras-mixer train --model '{")


def test_hyperband_runs(tmp_path):
    result = tune(model=TINY, recipe="finetune", overrides=dict(QUICK, epochs=2),
                  output_dir=str(tmp_path / "hb"), algorithm="hyperband", verbose=0)
    assert len(result["trials"]) >= 2 and result["best"]["score"] is not None


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
