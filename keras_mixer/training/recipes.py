"""Training recipes as data: one dict per recipe, one comment per field.

`pretrain` is the paper's Table 4 (ImageNet-1k, Mixer-B from scratch),
`finetune` the paper's fine-tuning recipe (authors' code), and `default` the
small run of `keras-mixer train` with no arguments on the embedded digits.
Every field can be overridden from the command line (`--learning-rate`, ...)
or by `train(..., overrides={...})`.

Expected result of `keras-mixer train` (the default recipe on the digits): the
test accuracy and time measured in benchmarks/results/train_default.md, quoted
once in docs/performance.md.
"""

import math

# A small Mixer for 32x32 digits: 4x4 patches -> 64 tokens (about 105k parameters).
DEFAULT_MODEL = dict(
    num_blocks=4, patch_size=4, hidden_dim=64, tokens_mlp_dim=64, channels_mlp_dim=128
)

RECIPES = {
    "pretrain": dict(
        optimizer="adamw",        # Adam (0.9, 0.999) with decoupled weight decay
        learning_rate=1e-3,       # peak, reached after the warm-up
        schedule="linear",        # linear warm-up, then linear decay to 0
        warmup_steps=10_000,      # paper: 10k steps at batch 4096
        weight_decay=0.1,         # decoupled (AdamW-style)
        clipnorm=1.0,             # clip gradients at global norm 1
        batch_size=4096,          # global batch (per-replica x replicas)
        epochs=300,
        label_smoothing=0.0,      # the paper does not mention any
        randaugment=(2, 15),      # (ops, magnitude on the paper's 0-30 scale) -> keras factor magnitude/30
        mixup=0.5,                # Beta(alpha, alpha) mixing with alpha 0.5 (paper: "mixup p=0.5")
        drop_path_rate=0.1,       # stochastic depth at the last block, linear from 0
        dropout=0.0,
        crop_area=(0.08, 1.0),    # inception crop: fraction of the image area kept
        flip=True,                # random horizontal flip
        image_size=224,
        layer_decay=1.0,          # learning rate x decay ** (depth from the top); 1 = off
    ),
    "finetune": dict(
        optimizer="sgd",          # SGD with momentum 0.9
        learning_rate=0.03,       # paper grid 0.003-0.06
        schedule="cosine",        # linear warm-up, then cosine decay to 0
        warmup_steps=500,
        weight_decay=0.0,         # none when fine-tuning
        clipnorm=1.0,
        batch_size=512,
        epochs=10,                # paper counts steps (10k-20k); pick epochs for your data
        label_smoothing=0.0,
        randaugment=None,         # no RandAugment
        mixup=0.0,                # no mixup
        drop_path_rate=0.0,
        dropout=0.0,
        crop_area=(0.08, 1.0),
        flip=True,
        image_size=224,
        layer_decay=1.0,          # learning rate x decay ** (depth from the top); 1 = off
    ),
    "default": dict(
        optimizer="adamw",
        learning_rate=3e-3,       # small model, small batch: a larger peak than the paper's
        schedule="cosine",
        warmup_steps=100,         # about 4 epochs of 23 steps
        weight_decay=0.05,
        clipnorm=1.0,
        batch_size=64,            # 1,437 training images -> 23 steps per epoch
        epochs=25,                # result: benchmarks/results/train_default.md
        label_smoothing=0.1,
        randaugment=None,         # 8x8 digits up-sampled: colour/shear ops only hurt
        mixup=0.0,
        drop_path_rate=0.0,
        dropout=0.0,
        crop_area=(0.6, 1.0),     # mild crops: a digit must stay recognisable
        flip=False,               # digits are not mirror-symmetric
        image_size=32,
        layer_decay=1.0,          # learning rate x decay ** (depth from the top); 1 = off
    ),
}
RECIPE_NAMES = tuple(RECIPES)
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
# Fields with a command-line flag (`--learning-rate` for learning_rate), and their types.
# randaugment has one too, written 'OPS,MAGNITUDE' or 'none' (see randaugment_arg).
FLAG_TYPES = dict(
    epochs=int, batch_size=int, learning_rate=float, weight_decay=float, warmup_steps=int,
    schedule=str, optimizer=str, clipnorm=float, label_smoothing=float, mixup=float,
    drop_path_rate=float, dropout=float, image_size=int, layer_decay=float,
)


def get_recipe(name, overrides=None):
    """A copy of recipe `name` with `overrides` (None values are ignored) applied."""
    if name not in RECIPES:
        raise ValueError(f"recipe: expected one of {list(RECIPE_NAMES)}; got {name!r}")
    recipe = dict(RECIPES[name])
    for key, value in (overrides or {}).items():
        if key not in recipe:
            raise ValueError(f"overrides: unknown recipe field {key!r}; expected one of {sorted(recipe)}")
        if value is not None:
            recipe[key] = value
    _check(recipe)
    return recipe


def flag(field):
    """The command-line flag of a recipe field: learning_rate -> --learning-rate."""
    return "--" + field.replace("_", "-")


def randaugment_arg(text):
    """The `--randaugment` value: 'OPS,MAGNITUDE' -> (ops, magnitude), 'none' -> False
    (off; None would mean "keep the recipe's")."""
    if text.strip().lower() == "none":
        return False
    try:
        ops, magnitude = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"randaugment: expected 'OPS,MAGNITUDE' or 'none'; got {text!r}") from None
    return int(ops), magnitude


def override_flags(overrides):
    """The command-line flags that set `overrides` (None values are left out):
    the inverse of the CLI's parsing, for commands printed to be run again."""
    argv = []
    for field, value in overrides.items():
        if value is None:
            continue
        if field == "randaugment":
            value = "none" if not value else f"{value[0]},{value[1]!r}"
        elif field not in FLAG_TYPES:
            raise ValueError(f"overrides: {field!r} has no command-line flag; "
                             f"expected one of {sorted(FLAG_TYPES)} or 'randaugment'")
        argv += [flag(field), repr(value) if isinstance(value, float) else str(value)]
    return argv


def _check(r):
    def need(ok, field, allowed):
        if not ok:
            raise ValueError(f"{field}: expected {allowed}; got {r[field]!r}")

    need(r["optimizer"] in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}")
    need(r["schedule"] in SCHEDULES, "schedule", f"one of {list(SCHEDULES)}")
    need(_positive(r["learning_rate"]), "learning_rate", "a finite number > 0")
    need(isinstance(r["warmup_steps"], int) and r["warmup_steps"] >= 0, "warmup_steps", "an int >= 0")
    need(_number(r["weight_decay"]) and r["weight_decay"] >= 0, "weight_decay", "a finite number >= 0")
    need(r["clipnorm"] is None or _positive(r["clipnorm"]), "clipnorm", "None or a finite number > 0")
    need(isinstance(r["batch_size"], int) and r["batch_size"] > 0, "batch_size", "an int > 0")
    need(isinstance(r["epochs"], int) and r["epochs"] > 0, "epochs", "an int > 0")
    need(_number(r["label_smoothing"]) and 0 <= r["label_smoothing"] < 1, "label_smoothing",
         "a number in [0, 1)")
    need(_number(r["mixup"]) and r["mixup"] >= 0, "mixup", "a number >= 0 (0 turns mixup off)")
    for field in ("drop_path_rate", "dropout"):
        need(_number(r[field]) and 0 <= r[field] < 1, field, "a number in [0, 1)")
    need(r["randaugment"] in (None, False) or (len(r["randaugment"]) == 2 and 0 <= r["randaugment"][1] <= 30),
         "randaugment", "None/False (off) or (num_ops, magnitude in [0, 30])")
    need(len(r["crop_area"]) == 2 and 0 < r["crop_area"][0] <= r["crop_area"][1] <= 1,
         "crop_area", "(low, high) with 0 < low <= high <= 1")
    need(isinstance(r["image_size"], int) and r["image_size"] > 0, "image_size", "an int > 0")
    need(_number(r["layer_decay"]) and 0 < r["layer_decay"] <= 1, "layer_decay",
         "a number in (0, 1] (1 turns it off)")


def _number(x):
    # Finite only: an infinite learning rate or decay trains to NaN (as a NaN one would).
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x):
    return _number(x) and x > 0
