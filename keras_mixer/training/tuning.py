"""`tune(...)`: a keras-tuner search over the fine-tuning recipe.

The search space is the recipe's learning rate (log scale around the recipe's
value), weight decay, drop-path rate and label smoothing; for models trained
from scratch with a custom config (the default digits model) also width and
depth. Trials are scored on a hold-out of the training split, never on the
test split. Results: OUTPUT_DIR/results.json (every trial) and
OUTPUT_DIR/best_config.json (the best values, and the `keras-mixer train`
command that trains with them and every other flag of the search).
"""

import dataclasses
import json
import os
import shlex

import keras
import keras_tuner as kt

from keras_mixer import datasets
from keras_mixer.training import data as data_lib
from keras_mixer.training import outputs
from keras_mixer.training import recipes as recipes_lib
from keras_mixer.training import strategy as strategy_lib
from keras_mixer.training.trainer import build_model, check_arguments, make_optimizer

ALGORITHMS = ("hyperband", "bayesian")
# Search space; the learning rate spans [lr / LR_SPAN, lr * LR_SPAN] around the recipe's.
LR_SPAN = 10.0
WEIGHT_DECAYS = (0.0, 1e-4, 1e-2, 0.05, 0.1)  # 0 is the fine-tuning recipe's value
DROP_PATH = (0.0, 0.2, 0.1)  # (min, max, step) stochastic depth at the last block
LABEL_SMOOTHING = (0.0, 0.2, 0.1)  # (min, max, step)
WIDTHS = (32, 64, 128)  # hidden_dim C of from-scratch custom models; MLP dims scale with it
DEPTHS = (2, 8, 2)  # (min, max, step) num_blocks of from-scratch custom models
TUNED_FIELDS = ("learning_rate", "weight_decay", "drop_path_rate", "label_smoothing")


def trial_variant(base, num_blocks, width):
    """`base` with another depth and width; both MLP dims scale with the width."""
    scale = width / base["hidden_dim"]
    return dict(base, num_blocks=num_blocks, hidden_dim=width,
                tokens_mlp_dim=max(1, round(base["tokens_mlp_dim"] * scale)),
                channels_mlp_dim=max(1, round(base["channels_mlp_dim"] * scale)))


class MixerHyperModel(kt.HyperModel):
    """Builds and compiles one trial's Mixer from a `train` plan (see check_arguments)."""

    def __init__(self, plan, num_classes, total_steps):
        super().__init__(name="mixer")
        self.plan, self.num_classes, self.total_steps = plan, num_classes, total_steps

    def build(self, hp):
        recipe = dict(self.plan.hparams)
        lr = recipe["learning_rate"]
        recipe["learning_rate"] = hp.Float("learning_rate", lr / LR_SPAN, lr * LR_SPAN, sampling="log")
        recipe["weight_decay"] = hp.Choice("weight_decay", WEIGHT_DECAYS)
        recipe["drop_path_rate"] = hp.Float("drop_path_rate", *DROP_PATH[:2], step=DROP_PATH[2])
        recipe["label_smoothing"] = hp.Float("label_smoothing", *LABEL_SMOOTHING[:2],
                                             step=LABEL_SMOOTHING[2])
        plan = dataclasses.replace(self.plan, hparams=recipe)
        if isinstance(plan.variant, dict) and not plan.source.pretrained:
            depth = hp.Int("num_blocks", *DEPTHS[:2], step=DEPTHS[2])
            plan = dataclasses.replace(plan, variant=trial_variant(
                plan.variant, depth, hp.Choice("hidden_dim", WIDTHS)))
        model = build_model(plan, self.num_classes)
        model.compile(
            optimizer=make_optimizer(recipe, self.total_steps, model),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        return model


def tune(model="default", *, weights=None, dataset="default", data_dir=None,
         output_dir=os.path.join("runs", "tune"), recipe=None, overrides=None,
         algorithm="hyperband", max_trials=10, holdout=0.1, strategy="auto",
         overwrite=False, seed=0, verbose="auto"):
    """Runs the search; returns {"best": {...}, "trials": [...]} (also written out).

    Hyperband runs as many trials as its brackets need for `epochs` (the
    recipe's, or overrides["epochs"]) as maximum; Bayesian runs `max_trials`.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {list(ALGORITHMS)}; got {algorithm!r}")
    if not (isinstance(max_trials, int) and max_trials > 0):
        raise ValueError(f"max_trials: expected an int > 0; got {max_trials!r}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout: expected a fraction in (0, 1); got {holdout!r}")
    plan = check_arguments(model, weights, dataset, data_dir, recipe, overrides, strategy, "float32")
    hp = plan.hparams
    dist = strategy_lib.get_strategy(strategy)
    global_batch = strategy_lib.global_batch_size(hp["batch_size"], dist.num_replicas_in_sync)
    source = datasets.load_source(dataset, data_dir, hp["image_size"], holdout=holdout, seed=seed)
    steps = source.num_train // global_batch
    if steps == 0:
        raise ValueError(f"batch_size: the global batch {global_batch} is larger than the "
                         f"{source.num_train} training images")
    hypermodel = MixerHyperModel(plan, source.num_classes, steps * hp["epochs"])
    common = dict(objective="val_accuracy", seed=seed, directory=output_dir, project_name="search",
                  overwrite=overwrite, distribution_strategy=dist)
    if algorithm == "hyperband":
        tuner = kt.Hyperband(hypermodel, max_epochs=hp["epochs"], factor=3, **common)
    else:
        tuner = kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    print(f"searching ({algorithm}) the {plan.recipe} recipe on {dataset}: "
          f"{source.num_train:,} training and {source.num_test:,} held-out images; "
          f"{strategy_lib.describe(dist)}, global batch {global_batch}, up to {hp['epochs']} "
          f"epochs a trial")
    tuner.search(data_lib.train_pipeline(source, hp, global_batch, seed), epochs=hp["epochs"], shuffle=False,
                 validation_data=data_lib.eval_pipeline(source, plan.eval_transform, global_batch),
                 verbose=outputs.progress_verbosity(verbose))
    rerun = dict(overrides=overrides, seed=seed, strategy=strategy)
    return write_results(tuner, plan, output_dir, rerun)


def write_results(tuner, plan, output_dir, rerun):
    """results.json (every trial) and best_config.json (the best trial and the
    command that trains with its values); `rerun`: the search's overrides, seed
    and strategy, which the command repeats."""
    trials = [dict(trial_id=t.trial_id, status=t.status, score=t.score,
                   hyperparameters=t.hyperparameters.values)
              for t in tuner.oracle.trials.values()]
    trials.sort(key=lambda t: -(t["score"] if t["score"] is not None else float("-inf")))
    best = dict(trials[0]) if trials else {}
    if best:
        best["command"] = train_command(plan, best["hyperparameters"], **rerun)
    result = dict(best=best, trials=trials)
    outputs.write_json(os.path.join(output_dir, "results.json"), trials)
    outputs.write_json(os.path.join(output_dir, "best_config.json"), best)
    return result


def train_command(plan, values, *, overrides, seed, strategy):
    """The `keras-mixer train` command of the search's plan and flags with the
    tuned `values` (exact, not rounded) in place of the searched fields."""
    model = plan.model
    if "hidden_dim" in values:  # a from-scratch custom model: its config is part of the result
        model = trial_variant(plan.variant, values["num_blocks"], values["hidden_dim"])
    argv = ["keras-mixer", "train", "--model", json.dumps(model) if isinstance(model, dict) else model]
    if plan.weights is not None:
        argv += ["--weights", os.fspath(plan.weights)]
    argv += ["--dataset", plan.dataset]
    if plan.data_dir is not None:
        argv += ["--data-dir", plan.data_dir]
    argv += ["--recipe", plan.recipe]
    tuned = {k: float(values[k]) for k in TUNED_FIELDS if k in values}
    argv += recipes_lib.override_flags({**(overrides or {}), **tuned})
    if strategy != "auto":
        argv += ["--strategy", strategy]
    if seed != 0:
        argv += ["--seed", str(seed)]
    return shlex.join(argv)
