"""`train(...)`: the plain function behind `keras-mixer train`.

    from keras_mixer.training import train
    metrics = train()                                  # the README's main job
    metrics = train(model="S/16", dataset="tfds:imagenet2012", data_dir="...",
                    recipe="pretrain", strategy="auto")

Everything is checked before any data is read or any model is built. The
model, optimizer and metrics are made inside `strategy.scope()`; the global
batch is divided between the replicas by tf.distribute itself.
"""

import json
import math
import os
import time

import keras

from keras_mixer import weights as weights_lib
from keras_mixer.model import resolve_variant
from keras_mixer import datasets
from keras_mixer.training import data as data_lib
from keras_mixer.training import multiworker
from keras_mixer.training import outputs
from keras_mixer.training import recipes as recipes_lib
from keras_mixer.training import strategy as strategy_lib
from keras_mixer.training.schedules import WarmupSchedule

DEFAULT_OUTPUT_DIR = os.path.join("runs", "default")


def train(model="default", *, weights=None, dataset="default", data_dir=None,
          output_dir=DEFAULT_OUTPUT_DIR, recipe=None, overrides=None, strategy="auto",
          precision="float32", jit_compile=False, per_replica_batch=False,
          overwrite=False, seed=0, verbose="auto"):
    """Trains, evaluates on the test split and saves; returns the final metrics.

    model: "default" (a small Mixer for the digits), a variant ("S/16") or a
    config dict. weights: None or a tag/file for the variant (fine-tuning).
    recipe: "default", "pretrain" or "finetune"; by default "default" for the
    default model, "finetune" with weights, else "pretrain". overrides: recipe
    fields to replace ({"epochs": 5, ...}). per_replica_batch: read the
    recipe's batch_size per replica (global = batch_size x replicas).
    Returns a dict (also written to OUTPUT_DIR/metrics.json).
    """
    plan = check_arguments(model, weights, dataset, data_dir, recipe, overrides, strategy, precision)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        return _run(plan, output_dir, strategy, precision, jit_compile, per_replica_batch,
                    overwrite, seed, verbose)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def check_arguments(model, weights, dataset, data_dir, recipe, overrides, strategy, precision):
    """Every argument, before any work; returns what the run needs."""
    if recipe is None:
        recipe = "default" if model == "default" else ("finetune" if weights else "pretrain")
    hparams = recipes_lib.get_recipe(recipe, overrides)
    datasets.check_spec(dataset, data_dir)
    strategy_lib.check_strategy(strategy)
    if precision not in recipes_lib.PRECISIONS:
        raise ValueError(f"precision: expected one of {list(recipes_lib.PRECISIONS)}; got {precision!r}")
    variant = recipes_lib.DEFAULT_MODEL if model == "default" else model
    config = resolve_variant(variant)  # raises for an unknown variant
    source = weights_lib.resolve_weights(weights, variant)  # raises for a tag the variant lacks
    size = hparams["image_size"]
    if size % config["patch_size"]:
        raise ValueError(f"image_size: must be a multiple of the patch size {config['patch_size']}; "
                         f"got {size}")
    native = source.resolution[0]
    if source.pretrained and source.kind != "h5" and size % native:
        raise ValueError(f"image_size: the {source.name} weights need a multiple of {native} "
                         f"(paper, Appendix C); got {size}")
    return dict(model=model, variant=variant, config=config, weights=weights, source=source,
                dataset=dataset, data_dir=data_dir, recipe=recipe, hparams=hparams)


def _run(plan, output_dir, strategy_name, precision, jit_compile, per_replica_batch,
         overwrite, seed, verbose):
    started = time.time()
    strategy = strategy_lib.get_strategy(strategy_name)
    multi = strategy_lib.is_multiworker(strategy)
    if multi and jit_compile:
        raise ValueError("jit_compile: the multi-worker training loop does not compile with XLA; "
                         "got True (leave --jit-compile out with several workers)")
    replicas = strategy.num_replicas_in_sync
    hp = plan["hparams"]
    global_batch = strategy_lib.global_batch_size(hp["batch_size"], replicas, per_replica_batch)
    run_config = dict(
        model=plan["model"], weights=plan["weights"], dataset=plan["dataset"],
        data_dir=plan["data_dir"], recipe=plan["recipe"], hparams=hp, precision=precision,
        global_batch=global_batch, seed=seed, strategy=strategy_name, jit_compile=jit_compile,
    )
    chief = strategy_lib.is_chief()
    work_dir = output_dir if chief else _worker_dir(output_dir)
    finished = outputs.prepare(work_dir, run_config, overwrite)
    if finished is not None:
        print(f"{output_dir}: this run already finished (test accuracy "
              f"{finished['test_accuracy']:.4f}); pass --overwrite to train it again")
        return finished

    keras.utils.set_random_seed(seed)
    source = datasets.load_source(plan["dataset"], plan["data_dir"], hp["image_size"], seed=seed)
    steps = source.num_train // global_batch
    if steps == 0:
        raise ValueError(f"batch_size: the global batch {global_batch} is larger than the "
                         f"{source.num_train} training images")
    # Written once the data checks passed, so a refused run leaves nothing behind.
    outputs.write_json(os.path.join(work_dir, outputs.RUN_CONFIG), run_config)
    train_data = data_lib.train_pipeline(source, hp, global_batch, seed)
    test_data = data_lib.eval_pipeline(source, hp["image_size"], global_batch)

    with strategy.scope():
        net = build_model(plan, source.num_classes)
        net.compile(
            optimizer=make_optimizer(hp, steps * hp["epochs"]),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(min(5, source.num_classes), name="top5")],
            jit_compile=jit_compile,
        )
    if multi:  # keras.Model.fit fails there: TF's custom loop (multiworker.py)
        history, scores, times = multiworker.fit(
            net, strategy, train_data, test_data, hp["epochs"], steps, global_batch,
            hp["label_smoothing"], output_dir, work_dir, chief, verbose)
    else:
        timer = EpochTimer()
        history = net.fit(train_data, validation_data=test_data, epochs=hp["epochs"], shuffle=False,
                          callbacks=_callbacks(work_dir, timer), verbose=verbose).history
        scores, times = net.evaluate(test_data, verbose=0, return_dict=True), timer.times
    metrics = dict(
        test_accuracy=float(scores["accuracy"]), test_top5=float(scores["top5"]),
        test_loss=float(scores["loss"]), epochs=hp["epochs"],
        epochs_this_session=len(history.get("loss", [])),
        train_steps=int(keras.ops.convert_to_numpy(net.optimizer.iterations)),
        train_images_per_second=images_per_second(times, steps * global_batch),
        wall_time_s=round(time.time() - started, 1), num_train=source.num_train,
        num_test=source.num_test, skipped_files=source.skipped, replicas=replicas,
        global_batch=global_batch, parameters=net.count_params(),
        nan_stopped=any(math.isnan(v) for v in history.get("loss", [])),
        class_names=source.class_names, strategy=type(strategy).__name__,
    )
    save_for_inference(net, os.path.join(work_dir, "model.keras"))
    outputs.plot_curves(outputs.read_log(os.path.join(work_dir, outputs.LOG_CSV)),
                        os.path.join(work_dir, "curves.png"))
    outputs.write_json(os.path.join(work_dir, outputs.METRICS), metrics)
    print(f"test accuracy {metrics['test_accuracy']:.4f} (top-5 {metrics['test_top5']:.4f}) "
          f"on {source.num_test} images; model, logs and metrics in {work_dir}")
    return metrics


def save_for_inference(net, path):
    """Saves the trained model without its optimizer: `keras.models.load_model`
    then needs only `import keras_mixer` (the run's backup keeps the training state)."""
    # Rebuilt from the config: clone_model would also copy the compile config,
    # and the optimizer's schedule would then need keras_mixer.training to load.
    final = keras.Model.from_config(net.get_config())
    final.set_weights(net.get_weights())
    final.save(path)


def build_model(plan, num_classes):
    """The Mixer for this run; a new head when the weights' head does not fit."""
    from keras_mixer.model import Mixer

    hp, source = plan["hparams"], plan["source"]
    shape = (hp["image_size"], hp["image_size"], 3)
    common = dict(input_shape=shape, drop_path_rate=hp["drop_path_rate"], weights=plan["weights"])
    if source.kind in ("none", "h5") or source.classes == num_classes:
        return Mixer(plan["variant"], classes=num_classes, dropout=hp["dropout"], **common)
    # Fine-tuning on other classes: the pretrained backbone, then a fresh
    # zero-initialised head as in the paper (and the model's own head layer).
    backbone = Mixer(plan["variant"], include_top=False, pooling="avg", **common)
    x = backbone.output
    if hp["dropout"]:
        x = keras.layers.Dropout(hp["dropout"], name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="head")(x)
    x = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(backbone.input, x, name=backbone.name)


def make_optimizer(hp, total_steps):
    """The recipe's optimizer and schedule, with global-norm gradient clipping."""
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
    return opt


def _callbacks(work_dir, timer):
    backup = os.path.join(work_dir, "backup")
    log = os.path.join(work_dir, outputs.LOG_CSV)
    best = max((r.get("val_accuracy", 0.0) for r in outputs.read_log(log)), default=None)
    return [
        # First: restores weights, optimizer and epoch before anything else runs.
        keras.callbacks.BackupAndRestore(backup, save_freq="epoch", double_checkpoint=True),
        outputs.ResumeLog(log, os.path.join(backup, "training_metadata.json")),
        keras.callbacks.CSVLogger(log, append=True),
        # Weights only, loadable with Mixer(..., weights="best.weights.h5").
        keras.callbacks.ModelCheckpoint(os.path.join(work_dir, "best.weights.h5"), monitor="val_accuracy",
                                        mode="max", save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=best),
        keras.callbacks.TerminateOnNaN(),
        timer,
    ] + _tensorboard(os.path.join(work_dir, "logs"))


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
