"""`keras-mixer train`, `keras-mixer evaluate` and `keras-mixer tune`.

Thin: parse, then call `train`, `evaluate` or `tune` of `keras_mixer.training`.
"""

import json

from keras_mixer.training.recipes import PRECISIONS, RECIPE_NAMES
from keras_mixer.training.strategy import STRATEGIES

# Recipe fields settable from the command line: flag -> (field, type).
RECIPE_FLAGS = {
    "--epochs": ("epochs", int), "--batch-size": ("batch_size", int),
    "--learning-rate": ("learning_rate", float), "--weight-decay": ("weight_decay", float),
    "--warmup-steps": ("warmup_steps", int), "--schedule": ("schedule", str),
    "--optimizer": ("optimizer", str), "--clipnorm": ("clipnorm", float),
    "--label-smoothing": ("label_smoothing", float), "--mixup": ("mixup", float),
    "--drop-path-rate": ("drop_path_rate", float), "--dropout": ("dropout", float),
    "--image-size": ("image_size", int),
}


def add_parsers(subparsers):
    p = subparsers.add_parser("train", help="train or fine-tune a Mixer (default: the embedded digits)")
    _model_and_data(p, default_model="default")
    p.add_argument("--output-dir", default="runs/default",
                   help="where everything is written (default: runs/default)")
    _recipe_flags(p)
    p.add_argument("--per-replica-batch", action="store_true",
                   help="read --batch-size per replica: global batch = batch size x replicas")
    p.add_argument("--precision", default="float32", choices=PRECISIONS)
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing output dir")
    p.set_defaults(run=_run_train)

    p = subparsers.add_parser("evaluate", help="top-1/top-5 of a saved model or a pretrained tag")
    p.add_argument("model", help="a .keras file, or a variant (B/16) with --weights")
    p.add_argument("--weights", help="weights tag or file for a variant (e.g. imagenet)")
    p.add_argument("--dataset", default="default",
                   help="default | tfds:NAME | folder:PATH (default: default)")
    p.add_argument("--data-dir", help="tfds data dir holding the prepared dataset")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--strategy", default="default", choices=STRATEGIES)
    p.set_defaults(run=_run_evaluate)

    p = subparsers.add_parser("tune", help="keras-tuner search over the fine-tuning recipe")
    _model_and_data(p, default_model="default")
    p.add_argument("--output-dir", default="runs/tune", help="tuner trials and results (default: runs/tune)")
    _recipe_flags(p)
    p.add_argument("--algorithm", default="hyperband", choices=("hyperband", "bayesian"))
    p.add_argument("--max-trials", type=int, default=10, help="trials of the Bayesian search")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of train used to score trials")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier search in --output-dir")
    p.set_defaults(run=_run_tune)


def _model_and_data(p, default_model):
    p.add_argument("--model", default=default_model,
                   help="'default', a variant (S/16, B/16, ...) or a JSON config dict")
    p.add_argument("--weights", help="pretrained tag (imagenet, ...) or .npz/.weights.h5 file")
    p.add_argument("--dataset", default="default",
                   help="default | tfds:NAME | folder:PATH (default: default)")
    p.add_argument("--data-dir", help="tfds data dir holding the prepared dataset")
    p.add_argument("--recipe", choices=RECIPE_NAMES,
                   help="default for the default model, finetune with --weights, else pretrain")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--seed", type=int, default=0)


def _recipe_flags(p):
    for flag, (field, kind) in RECIPE_FLAGS.items():
        p.add_argument(flag, type=kind, dest=field, help=f"override the recipe's {field}")
    p.add_argument("--randaugment", help="'OPS,MAGNITUDE' (e.g. 2,15) or 'none'")


def _model_arg(text):
    if not text.strip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"model: expected a variant or a JSON config dict; got {text!r} ({err})") from None


def _overrides(args):
    overrides = {field: getattr(args, field) for field, _ in RECIPE_FLAGS.values()}
    if args.randaugment:
        if args.randaugment.lower() == "none":
            overrides["randaugment"] = False  # None would mean "keep the recipe's"
        else:
            try:
                ops, magnitude = (float(v) for v in args.randaugment.split(","))
            except ValueError:
                raise ValueError(
                    f"randaugment: expected 'OPS,MAGNITUDE' or 'none'; got {args.randaugment!r}") from None
            overrides["randaugment"] = (int(ops), magnitude)
    return overrides


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

    result = evaluate(args.model, weights=args.weights, dataset=args.dataset,
                      data_dir=args.data_dir, batch_size=args.batch_size, split=args.split,
                      strategy=args.strategy)
    print(json.dumps(result, indent=2))


def _run_tune(args):
    from keras_mixer.training.tuning import tune

    result = tune(
        model=_model_arg(args.model), weights=args.weights, dataset=args.dataset,
        data_dir=args.data_dir, output_dir=args.output_dir, recipe=args.recipe,
        overrides=_overrides(args), algorithm=args.algorithm, max_trials=args.max_trials,
        holdout=args.holdout, strategy=args.strategy, overwrite=args.overwrite, seed=args.seed,
    )
    print(json.dumps(result["best"], indent=2))
    print(f"all trials in {args.output_dir}/results.json; best in {args.output_dir}/best_config.json")
