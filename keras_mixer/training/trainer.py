"""`train(...)`: the plain function behind `keras-mixer train`.

    from keras_mixer.training import train
    metrics = train()                                  # the README's main job
    metrics = train(model="S/16", dataset="tfds:imagenet2012", data_dir="...",
                    recipe="pretrain", strategy="auto")

Everything is checked before any data is read or any model is built. The
model, optimizer and metrics are made inside `strategy.scope()`; the global
batch is divided between the replicas by tf.distribute itself.
"""

import dataclasses
import json
import math
import os
import sys
import time

import keras

from keras_mixer import files
from keras_mixer import weights as weights_lib
from keras_mixer.model import resolve_variant
from keras_mixer.precision import Precision
from keras_mixer.preprocessing import EvalTransform
from keras_mixer import datasets
from keras_mixer.training import backup
from keras_mixer.training import data as data_lib
from keras_mixer.training import multiworker
from keras_mixer.training import outputs
from keras_mixer.training import recipes as recipes_lib
from keras_mixer.training import strategy as strategy_lib
from keras_mixer.training.backup import AtomicBackupAndRestore
from keras_mixer.training.layer_decay import with_layer_decay
from keras_mixer.training.schedules import WarmupSchedule

DEFAULT_OUTPUT_DIR = os.path.join("runs", "default")


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What a checked `train` (or `tune`) call will do (`check_arguments`)."""

    model: object  # as given: "default", a variant name ("S/16") or a config dict
    variant: object  # the variant built: the default model's config for "default"
    config: dict  # its blocks, patch and widths
    weights: object  # as given (None, a tag, a path)
    source: weights_lib.WeightsSource  # what `weights` resolved to
    dataset: str
    data_dir: str
    recipe: str  # the recipe's name
    hparams: dict  # the recipe's fields, overrides applied
    precision: Precision = Precision.FLOAT32

    @property
    def eval_transform(self):
        """The weights' own eval resize, crop and interpolation at the recipe's size."""
        size = self.hparams["image_size"]
        return EvalTransform((size, size), **{k: v for k, v in self.source.preprocessing.items()
                                              if k in ("crop_fraction", "interpolation")})


def train(model="default", *, weights=None, dataset="default", data_dir=None,
          output_dir=DEFAULT_OUTPUT_DIR, recipe=None, overrides=None, strategy="auto",
          precision="float32", jit_compile=False, per_replica_batch=False,
          overwrite=False, seed=0, verbose="auto"):
    """Trains, evaluates on the test split and saves; returns the final metrics.

    model: "default" (a small Mixer for the digits), a variant ("S/16") or a
    config dict. weights: None or a tag/file for the variant (fine-tuning).
    recipe: "default", "pretrain" or "finetune"; by default (`default_recipe`)
    "default" for the default model or the embedded digits, "finetune" with
    weights, else "pretrain". overrides: recipe fields to replace ({"epochs": 5,
    ...}). per_replica_batch: read the recipe's batch_size per replica (global =
    batch_size x replicas). overwrite: start over; the old run is set aside
    only once every input was checked, and deleted once this run has trained
    an epoch. verbose: "auto" is a progress bar on a terminal, else a line
    per epoch. `load_run(output_dir)` rebuilds the trained model.
    Returns a dict (also written to OUTPUT_DIR/metrics.json).
    """
    plan = check_arguments(model, weights, dataset, data_dir, recipe, overrides, strategy, precision)
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise ValueError(f"output_dir: expected a directory path; got {output_dir!r}")
    output_dir = os.fspath(output_dir)
    precision = plan.precision
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision.keras_policy)
    try:
        return _run(plan, output_dir, strategy, precision, jit_compile, per_replica_batch,
                    overwrite, seed, verbose)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def check_arguments(model, weights, dataset, data_dir, recipe, overrides, strategy, precision):
    """Every argument, before any work; returns what the run needs."""
    if recipe is None:
        recipe = default_recipe(model, weights, dataset)
    hparams = recipes_lib.get_recipe(recipe, overrides)
    datasets.check_spec(dataset, data_dir)
    strategy_lib.check_strategy(strategy)
    precision = Precision.parse(precision)
    variant = recipes_lib.DEFAULT_MODEL if model == "default" else model
    config = resolve_variant(variant)  # raises for an unknown variant
    source = weights_lib.resolve_weights(weights, variant)  # raises for a tag the variant lacks
    size = hparams["image_size"]
    if size % config["patch_size"]:
        raise ValueError(f"image_size: must be a multiple of the patch size {config['patch_size']}; "
                         f"got {size}")
    if source.resolution is not None and source.pretrained:
        native = source.resolution[0]
        if size % native:
            raise ValueError(f"image_size: the {source.name} weights were trained at {native} px "
                             f"and need a multiple of it (paper, Appendix C); got {size}")
    return TrainingPlan(model=model, variant=variant, config=config, weights=weights,
                        source=source, dataset=dataset, data_dir=data_dir, recipe=recipe,
                        hparams=hparams, precision=precision)


def default_recipe(model, weights, dataset):
    """The recipe when none is named: the small one for the default model and
    for any model trained from scratch on the embedded digits (the paper's
    pre-training recipe, batch 4096 at 224 px, would not even fill a batch
    there), the paper's fine-tuning with weights, else the paper's pre-training."""
    if model == "default" or (dataset == "default" and weights is None):
        return "default"
    return "finetune" if weights is not None else "pretrain"


def _run(plan, output_dir, strategy_name, precision, jit_compile, per_replica_batch,
         overwrite, seed, verbose):
    started = time.time()
    strategy = strategy_lib.get_strategy(strategy_name)
    multi = strategy_lib.is_multiworker(strategy)
    if multi and jit_compile:
        raise ValueError("jit_compile: the multi-worker training loop does not compile with XLA; "
                         "got True (leave --jit-compile out with several workers)")
    hp = plan.hparams
    global_batch = strategy_lib.global_batch_size(hp["batch_size"], strategy.num_replicas_in_sync,
                                                  per_replica_batch)
    run_config = dict(
        model=plan.model, weights=plan.weights, dataset=plan.dataset,
        data_dir=plan.data_dir, recipe=plan.recipe, hparams=hp, precision=precision.value,
        global_batch=global_batch, seed=seed, strategy=strategy_name, jit_compile=jit_compile,
    )
    chief = strategy_lib.is_chief()
    work_dir = output_dir if chief else _worker_dir(output_dir)
    with outputs.locked(work_dir):  # a second run into the same directory is refused
        return _run_locked(plan, run_config, strategy, dict(
            output_dir=output_dir, work_dir=work_dir, chief=chief, multi=multi, started=started),
            overwrite, seed, verbose)


def _run_locked(plan, run_config, strategy, where, overwrite, seed, verbose):
    output_dir, work_dir, global_batch = where["output_dir"], where["work_dir"], run_config["global_batch"]
    chief, multi, started = where["chief"], where["multi"], where["started"]
    hp = plan.hparams
    finished = outputs.prepare(work_dir, run_config, overwrite)
    if finished is not None:
        # Left by a kill between the final outputs and their clean-up.
        backup.remove(os.path.join(work_dir, outputs.BACKUP))
        outputs.discard_previous(work_dir)
        print(f"{output_dir}: this run already finished (test accuracy "
              f"{finished['test_accuracy']:.4f}); pass --overwrite to train it again")
        return finished

    keras.utils.set_random_seed(seed)
    source = datasets.load_source(plan.dataset, plan.data_dir, hp["image_size"], seed=seed)
    if source.num_train < global_batch:
        raise ValueError(f"batch_size: the global batch {global_batch} is larger than the "
                         f"{source.num_train} training images")
    # Every input is checked: only now is an old run set aside (and put back
    # if this one fails before it has trained an epoch).
    if overwrite:
        outputs.set_aside_previous(work_dir)
    try:
        return _train(plan, source, run_config, strategy, dict(
            output_dir=output_dir, work_dir=work_dir, chief=chief, multi=multi, started=started,
            verbose=outputs.progress_verbosity(verbose), restore=not overwrite))
    except BaseException:
        if os.path.isdir(os.path.join(work_dir, outputs.PREVIOUS)):
            outputs.restore_previous(work_dir)
            print(f"{work_dir}: put back the previous run (this one stopped before it trained "
                  f"an epoch)", file=sys.stderr)
        raise


def _train(plan, source, run_config, strategy, where):
    hp, global_batch = plan.hparams, run_config["global_batch"]
    steps = source.num_train // global_batch
    work_dir = where["work_dir"]
    train_data = data_lib.train_pipeline(source, hp, global_batch, run_config["seed"])
    test_data = data_lib.eval_pipeline(source, plan.eval_transform, global_batch)
    with strategy.scope():
        net = build_model(plan, source.num_classes)
        net.compile(
            optimizer=make_optimizer(hp, steps * hp["epochs"], net),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(min(5, source.num_classes), name="top5")],
            jit_compile=run_config["jit_compile"],
        )
    # Written once the model is built: a run that got this far can be resumed
    # and its model rebuilt (load_run), from this file alone.
    run_config.update(architecture=outputs.architecture(net), num_classes=source.num_classes,
                      class_names=source.class_names)
    outputs.write_json(os.path.join(work_dir, outputs.RUN_CONFIG), run_config)
    if where["chief"]:
        print(summary(plan, net, source, strategy, global_batch, where["output_dir"]))
    backup_dir = os.path.join(where["output_dir"] if where["multi"] else work_dir, outputs.BACKUP)
    if where["multi"]:  # keras.Model.fit fails there: TF's custom loop (multiworker.py)
        history, scores, times = multiworker.fit(
            net, strategy, train_data, test_data, steps=steps, epochs=hp["epochs"],
            global_batch=global_batch, label_smoothing=hp["label_smoothing"], backup_dir=backup_dir,
            work_dir=work_dir, chief=where["chief"], verbose=where["verbose"], restore=where["restore"])
    else:
        timer = EpochTimer()
        history = net.fit(train_data, validation_data=test_data, epochs=hp["epochs"], shuffle=False,
                          callbacks=_callbacks(work_dir, timer), verbose=where["verbose"]).history
        scores, times = net.evaluate(test_data, verbose=0, return_dict=True), timer.times
    rows = outputs.read_log(os.path.join(work_dir, outputs.LOG_CSV))
    metrics = dict(
        test_accuracy=float(scores["accuracy"]), test_top5=float(scores["top5"]),
        test_loss=float(scores["loss"]), epochs=hp["epochs"],
        epochs_this_session=len(history.get("loss", [])),
        train_steps=int(keras.ops.convert_to_numpy(net.optimizer.iterations)),
        train_images_per_second=images_per_second(times, steps * global_batch),
        wall_time_s=round(time.time() - where["started"], 1), num_train=source.num_train,
        num_test=source.num_test, skipped_files=source.skipped, replicas=strategy.num_replicas_in_sync,
        global_batch=global_batch, parameters=net.count_params(),
        nan_stopped=any(math.isnan(r.get("loss", 0.0)) for r in rows),
        class_names=source.class_names, strategy=type(strategy).__name__,
    )
    save_for_inference(net, os.path.join(work_dir, outputs.MODEL))
    outputs.plot_curves(rows, os.path.join(work_dir, "curves.png"))
    outputs.write_json(os.path.join(work_dir, outputs.METRICS), metrics)
    # Only now: a kill before this point resumes after the last epoch, not from the start.
    if where["chief"]:
        backup.remove(backup_dir)
    outputs.discard_previous(work_dir)
    print(f"test accuracy {metrics['test_accuracy']:.4f} (top-5 {metrics['test_top5']:.4f}) "
          f"on {source.num_test} images; model, logs and metrics in {work_dir}")
    return metrics


def summary(plan, net, source, strategy, global_batch, output_dir):
    """The line printed before training: what trains on what, where, how wide."""
    model = plan.model
    name = json.dumps(model) if isinstance(model, dict) else f"Mixer {model}"
    return (f"training {name} ({net.count_params():,} parameters, {plan.hparams['image_size']} px) "
            f"on {plan.dataset}: {source.num_train:,} training and {source.num_test:,} test images; "
            f"{strategy_lib.describe(strategy)}, global batch {global_batch}, "
            f"{plan.hparams['epochs']} epochs; outputs in {output_dir}")


def save_for_inference(net, path):
    """Saves the trained model without its optimizer: `keras.models.load_model`
    then needs only `import keras_mixer` (the run's backup keeps the training state)."""
    # Rebuilt from the config: clone_model would also copy the compile config,
    # and the optimizer's schedule would then need keras_mixer.training to load.
    final = keras.Model.from_config(net.get_config())
    final.set_weights(net.get_weights())
    with files.atomic_path(path, room=final.weights) as tmp:
        final.save(tmp)


def build_model(plan, num_classes):
    """The Mixer for this run; a new head when the weights' head does not fit."""
    from keras_mixer.model import Mixer

    hp, source = plan.hparams, plan.source
    shape = (hp["image_size"], hp["image_size"], 3)
    common = dict(input_shape=shape, drop_path_rate=hp["drop_path_rate"], weights=plan.weights)
    if not source.pretrained or source.classes == num_classes:
        return Mixer(plan.variant, classes=num_classes, dropout=hp["dropout"], **common)
    # Fine-tuning on other classes: the pretrained backbone, then a fresh
    # zero-initialised head as in the paper (and the model's own head layer).
    backbone = Mixer(plan.variant, include_top=False, pooling="avg", **common)
    x = backbone.output
    if hp["dropout"]:
        x = keras.layers.Dropout(hp["dropout"], name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="head")(x)
    x = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(backbone.input, x, name=backbone.name)


def make_optimizer(hp, total_steps, model=None):
    """The recipe's optimizer and schedule, with global-norm gradient clipping and,
    when `layer_decay` < 1, layer-wise learning-rate decay over `model`'s blocks."""
    warmup = min(hp["warmup_steps"], total_steps // 2)
    schedule = WarmupSchedule(hp["learning_rate"], warmup, total_steps, hp["schedule"])
    decay = hp["weight_decay"] or None
    clip = dict(global_clipnorm=hp["clipnorm"])
    if hp["optimizer"] == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=decay, **clip)
    elif hp["optimizer"] == "adam":
        opt = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, weight_decay=decay, **clip)
    else:
        opt = keras.optimizers.AdamW(schedule, weight_decay=hp["weight_decay"], beta_1=0.9,
                                     beta_2=0.999, **clip)
    # Only kernels decay: biases and LayerNorm scales/offsets are left alone.
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if hp.get("layer_decay", 1.0) < 1:
        opt = with_layer_decay(opt, model, decay=hp["layer_decay"])
    return opt


def _callbacks(work_dir, timer):
    log = os.path.join(work_dir, outputs.LOG_CSV)
    return [
        outputs.EpochLog(work_dir),  # log row and best weights
        keras.callbacks.TerminateOnNaN(),
        timer,
        *_tensorboard(os.path.join(work_dir, "logs")),
        # After the log row and best weights: the backup commits an epoch whose
        # outputs are on disk. Restores the state before the first epoch begins.
        AtomicBackupAndRestore(os.path.join(work_dir, outputs.BACKUP), keep=(log,)),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: outputs.discard_previous(work_dir)),
    ]


def _tensorboard(log_dir):
    # TensorFlow does not depend on the tensorboard package; without it the
    # callback fails at the first summary, so say so and go on without it.
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("TensorBoard logs skipped: the tensorboard package is not installed")
        return []
    return [keras.callbacks.TensorBoard(log_dir, profile_batch=0)]


def _worker_dir(output_dir):
    # Non-chief workers keep their own backups and logs beside the chief's.
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return os.path.join(output_dir, ".workers", f"{task.get('type', 'worker')}-{task.get('index', 0)}")


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each training epoch (without validation), for images/s."""

    def __init__(self):
        super().__init__()
        self.times = []
        self.start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training ended
        if self.start is not None:
            self.times.append(time.perf_counter() - self.start)
            self.start = None


def images_per_second(epoch_times, images_per_epoch):
    # The first epoch pays for tracing (and XLA compilation): leave it out.
    steady = sorted(epoch_times[1:] or epoch_times)
    return round(images_per_epoch / steady[len(steady) // 2], 1) if steady else None
