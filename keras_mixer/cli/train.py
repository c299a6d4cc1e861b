"""`keras-mixer train`, `keras-mixer evaluate` and `keras-mixer tune`.

Thin: parse, then call `train`, `evaluate` or `tune` of `keras_mixer.training`.
"""

import argparse
import json

from keras_mixer.cli.common import path_arg
from keras_mixer.precision import TRAIN as PRECISIONS
from keras_mixer.training.recipes import FLAG_TYPES, RECIPE_NAMES, flag, randaugment_arg
from keras_mixer.training.strategy import STRATEGIES

STRATEGY_HELP = ("tf.distribute strategy: auto (TPU, then a TF_CONFIG cluster, then several GPUs, "
                 "else one device), default (one device), mirrored (all local GPUs), multiworker "
                 "(TF_CONFIG), tpu (default: %(default)s)")
DATASET_HELP = "default (embedded digits) | tfds:NAME | folder:PATH (default: %(default)s)"


def add_parsers(subparsers):
    p = subparsers.add_parser("train", help="train or fine-tune a Mixer (default: the embedded digits)")
    _model_and_data(p, default_model="default")
    p.add_argument("--output-dir", default="runs/default", type=path_arg,
                   help="where everything is written; a rerun resumes there (default: %(default)s)")
    _recipe_flags(p)
    p.add_argument("--per-replica-batch", action="store_true",
                   help="read --batch-size per replica: global batch = batch size x replicas")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="compute precision: float32, or bfloat16/float16 matmuls and activations with "
                        "float32 weights and outputs (Keras' mixed policies) (default: %(default)s)")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an output dir holding another run (kept in .previous/ "
                        "until the new run has trained an epoch)")
    p.set_defaults(run=_run_train)

    p = subparsers.add_parser("evaluate", help="top-1/top-5 of a saved model or a pretrained tag")
    p.add_argument("model", type=path_arg, help="a .keras file, or a variant (B/16) with --weights")
    p.add_argument("--weights", type=_weights_arg, default=argparse.SUPPRESS,
                   help="for a variant (required): a tag (imagenet, ...), a .npz/.weights.h5 file, "
                        "or 'none' to evaluate the random initialisation")
    p.add_argument("--dataset", default="default", type=_dataset_arg, help=DATASET_HELP)
    p.add_argument("--data-dir", type=path_arg, help="tfds data dir holding the prepared dataset")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="which split to score: test (for the digits and folders without test/, "
                        "the held-out images) or train (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: %(default)s)")
    p.add_argument("--strategy", default="default", choices=STRATEGIES, help=STRATEGY_HELP)
    p.set_defaults(run=_run_evaluate)

    p = subparsers.add_parser("tune", help="keras-tuner search over the recipe (then train the best)")
    _model_and_data(p, default_model="default")
    p.add_argument("--output-dir", default="runs/tune", type=path_arg,
                   help="tuner trials and results (default: %(default)s)")
    _recipe_flags(p)
    p.add_argument("--algorithm", default="hyperband", choices=("hyperband", "bayesian"),
                   help="hyperband (trial count follows from --epochs) or bayesian "
                        "(--max-trials trials) (default: %(default)s)")
    p.add_argument("--max-trials", type=int, default=10, help="trials of the Bayesian search (default: %(default)s)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the training split that scores the trials; the test split "
                        "is never used (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier search in --output-dir")
    p.set_defaults(run=_run_tune)


def _model_and_data(p, default_model):
    p.add_argument("--model", default=default_model,
                   help="'default', a variant (S/16, B/16, ...) or a JSON config dict (default: %(default)s)")
    p.add_argument("--weights", type=_weights_arg,
                   help="pretrained tag (imagenet, ...) or .npz/.weights.h5 file to fine-tune from; "
                        "none or absent: from scratch")
    p.add_argument("--dataset", default="default", type=_dataset_arg, help=DATASET_HELP)
    p.add_argument("--data-dir", type=path_arg, help="tfds data dir holding the prepared dataset")
    p.add_argument("--recipe", choices=RECIPE_NAMES,
                   help="default: 'default' for the default model or the embedded digits, "
                        "'finetune' with --weights, else 'pretrain'")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES, help=STRATEGY_HELP)
    p.add_argument("--seed", type=int, default=0,
                   help="seeds weights, shuffling and augmentation (default: %(default)s)")


def _recipe_flags(p):
    for field, kind in FLAG_TYPES.items():
        p.add_argument(flag(field), type=kind, dest=field, help=f"override the recipe's {field}")
    p.add_argument("--randaugment",
                   help="override the recipe's RandAugment: 'OPS,MAGNITUDE' (e.g. 2,15) or 'none'")


def _weights_arg(text):
    # 'none' names the random initialisation on purpose (None in Python).
    return None if text.strip().lower() == "none" else path_arg(text)


def _dataset_arg(text):
    return "folder:" + path_arg(text[7:]) if text.startswith("folder:") else text


def _model_arg(text):
    if not text.strip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"model: expected a variant or a JSON config dict; got {text!r} ({err})") from None


def _overrides(args):
    overrides = {field: getattr(args, field) for field in FLAG_TYPES}
    overrides["randaugment"] = randaugment_arg(args.randaugment) if args.randaugment else None
    return overrides


def _rounded(value, digits=4):
    """Printed figures: 4 decimals (the files keep every digit)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _run_train(args):
    from keras_mixer.training.trainer import train

    metrics = train(
        model=_model_arg(args.model), weights=args.weights, dataset=args.dataset,
        data_dir=args.data_dir, output_dir=args.output_dir, recipe=args.recipe,
        overrides=_overrides(args), strategy=args.strategy, precision=args.precision,
        jit_compile=args.jit_compile, per_replica_batch=args.per_replica_batch,
        overwrite=args.overwrite, seed=args.seed,
    )
    return 0 if not metrics.get("nan_stopped") else 1


def _run_evaluate(args):
    from keras_mixer.training.evaluation import evaluate

    weights = {"weights": args.weights} if hasattr(args, "weights") else {}
    result = evaluate(_model_arg(args.model), dataset=args.dataset, data_dir=args.data_dir,
                      batch_size=args.batch_size, split=args.split, strategy=args.strategy, **weights)
    print(json.dumps(_rounded(result), indent=2))


def _run_tune(args):
    from keras_mixer.training.tuning import tune

    result = tune(
        model=_model_arg(args.model), weights=args.weights, dataset=args.dataset,
        data_dir=args.data_dir, output_dir=args.output_dir, recipe=args.recipe,
        overrides=_overrides(args), algorithm=args.algorithm, max_trials=args.max_trials,
        holdout=args.holdout, strategy=args.strategy, overwrite=args.overwrite, seed=args.seed,
    )
    best = dict(result["best"])
    command = best.pop("command", None)
    print(json.dumps(_rounded(best), indent=2))
    print(f"all trials in {args.output_dir}/results.json; best in {args.output_dir}/best_config.json")
    if command:  # as it is, to copy: json.dumps would escape its quotes
        print(f"train with the best values:\n  {command}")
