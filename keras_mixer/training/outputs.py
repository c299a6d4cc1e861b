"""What a training run leaves in its output directory, and how a rerun reads it.

    run_config.json   everything that defines the run, and what rebuilds its model
    backup/           the training state after the last epoch (backup.py); removed
                      once the final outputs below exist
    log.csv           one row per epoch, kept exact across kills and resumes
    logs/             TensorBoard
    best.weights.h5   best epoch by validation accuracy
    model.keras       the final model, without optimizer state
    metrics.json      final metrics; its presence marks a finished run
    curves.png        loss and accuracy per epoch
    .previous/        with --overwrite: the replaced run, until the new one has
                      trained an epoch (then deleted; put back if it fails first)

Every file is written to a temporary name and renamed (`keras_mixer.files`). The
epoch's log row and best weights are written before that epoch's backup, so a
kill between them loses nothing. Only these names are ever moved or deleted,
and only in a directory whose run_config.json keras-mixer wrote.
"""

import contextlib
import csv
import io
import json
import os
import shutil
import sys

import keras

from keras_mixer import files

RUN_CONFIG = "run_config.json"
METRICS = "metrics.json"
LOG_CSV = "log.csv"
BACKUP = "backup"
BEST = "best.weights.h5"
MODEL = "model.keras"
PREVIOUS = ".previous"
# Other workers of a cluster keep theirs in .workers/<task>/, each its own business.
# run_config.json last: it marks the others as a run's, so it is moved last.
ARTIFACTS = (BACKUP, LOG_CSV, "logs", BEST, MODEL, METRICS, "curves.png", RUN_CONFIG)
# May change between a run and its resumption: where and how it runs, not what it learns.
RESUMABLE_KEYS = ("strategy", "jit_compile", "data_dir", "verbose")
# Follow from the others (recorded to rebuild the model): not compared.
DERIVED_KEYS = ("architecture", "num_classes", "class_names")


def prepare(output_dir, config, overwrite):
    """Checks `output_dir` against `config` before any work, changing nothing
    (but putting back a run that an --overwrite killed early had set aside).
    Returns the finished run's metrics when this run already finished there
    (and not `overwrite`), else None (start, resume, or start over)."""
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir: expected a directory; got {output_dir!r}, a file")
    if not os.path.isdir(output_dir):
        return None
    if os.path.isdir(os.path.join(output_dir, PREVIOUS)) and not _exists(output_dir, RUN_CONFIG):
        restore_previous(output_dir)  # the new run never wrote its config: it never began
        print(f"{output_dir}: put back the run that an interrupted --overwrite had set aside")
    previous = _read_run_config(output_dir)
    if previous is None:
        present = [n for n in ARTIFACTS if _exists(output_dir, n)]
        if present:
            raise ValueError(
                f"output_dir: {output_dir!r} holds {', '.join(present)} but no {RUN_CONFIG}: "
                f"keras-mixer did not write them and will not replace them, --overwrite or not; "
                f"choose another --output-dir or move them away")
        return None
    if overwrite:
        return None
    if os.path.isdir(os.path.join(output_dir, PREVIOUS)):
        print(f"{output_dir}: {PREVIOUS}/ holds the run that --overwrite replaced; it is deleted "
              f"once this run has trained an epoch")
    before, now = _comparable(previous), _comparable(config)
    changed = {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)}
    if changed:
        diff = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise ValueError(
            f"output_dir: {output_dir!r} holds a run with a different configuration ({diff}); "
            f"refusing to mix them. Use another --output-dir, or pass --overwrite to start over")
    if _exists(output_dir, METRICS):
        with open(os.path.join(output_dir, METRICS), encoding="utf-8") as f:
            return json.load(f)
    return None


def _read_run_config(output_dir):
    path = os.path.join(output_dir, RUN_CONFIG)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        config = err
    if not (isinstance(config, dict) and {"model", "dataset", "hparams"} <= set(config)):
        raise ValueError(f"output_dir: {path!r} is not a keras-mixer run configuration ({config!r:.80}); "
                         f"choose another --output-dir")
    return config


def _comparable(config):
    # JSON round trip, so tuples and lists compare equal; nested dicts (the
    # recipe) are flattened so a message names the one field that changed.
    flat = {}
    for key, value in json.loads(json.dumps(config)).items():
        if key in RESUMABLE_KEYS or key in DERIVED_KEYS:
            continue
        if isinstance(value, dict) and key != "model":
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def set_aside_previous(output_dir):
    """--overwrite, once every input was checked: moves the old run into
    OUTPUT_DIR/.previous. If .previous exists, an earlier --overwrite never
    finished an epoch: what is here is that attempt (deleted), .previous stays."""
    keep = os.path.join(output_dir, PREVIOUS)
    if os.path.isdir(keep):
        _remove_artifacts(output_dir)
        return
    present = [n for n in ARTIFACTS if _exists(output_dir, n)]
    if not present:
        return
    os.makedirs(keep)
    for name in present:  # run_config.json last
        os.rename(os.path.join(output_dir, name), os.path.join(keep, name))
    print(f"{output_dir}: the previous run is kept in {keep} until this one has trained an epoch")


def restore_previous(output_dir):
    """Puts the run in .previous back in place of what is there now."""
    keep = os.path.join(output_dir, PREVIOUS)
    _remove_artifacts(output_dir)
    for name in ARTIFACTS:  # run_config.json last
        if _exists(keep, name):
            os.rename(os.path.join(keep, name), os.path.join(output_dir, name))
    os.rmdir(keep)


def discard_previous(output_dir):
    """The new run has trained an epoch: the run it replaced can go."""
    shutil.rmtree(os.path.join(output_dir, PREVIOUS), ignore_errors=True)


def _remove_artifacts(output_dir):
    for name in reversed(ARTIFACTS):  # run_config.json first: the rest is no run then
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def _exists(directory, name):
    return os.path.lexists(os.path.join(directory, name))


def write_json(path, data):
    files.write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_log(path):
    """Rows of log.csv as dicts of floats (empty if absent)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def write_log(path, rows):
    """The whole log.csv, atomically (it is small): one row per epoch."""
    keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    text = io.StringIO()
    writer = csv.DictWriter(text, keys)
    writer.writeheader()
    writer.writerows({**r, "epoch": int(r["epoch"])} for r in rows)
    files.write_bytes(path, text.getvalue().encode())


def saved_variables(model):
    """What `model.save_weights` writes: its weights and its optimizer's state."""
    optimizer = getattr(model, "optimizer", None)
    return [*model.weights, *(optimizer.variables if optimizer is not None else ())]


def save_weights(model, path):
    with files.atomic_path(path, room=saved_variables(model)) as tmp:
        model.save_weights(tmp)


class EpochLog(keras.callbacks.Callback):
    """log.csv and best.weights.h5 at the end of each epoch, for `fit` (as a
    callback, before the backup) and for the multi-worker loop (`start`, `end`).

    Rows of epochs that will be trained again (after the backup a run resumes
    from) are dropped when the first epoch of a session begins."""

    def __init__(self, work_dir, *, save_best=True):
        super().__init__()
        self.path, self.best_path = os.path.join(work_dir, LOG_CSV), os.path.join(work_dir, BEST)
        self.save_best, self.rows, self.best = save_best, None, None

    def start(self, epoch):
        self.rows = [r for r in read_log(self.path) if r["epoch"] < epoch]
        self.best = max((r.get("val_accuracy", float("-inf")) for r in self.rows), default=float("-inf"))

    def end(self, epoch, logs, model):
        self.rows.append(dict(epoch=epoch, **{k: float(v) for k, v in (logs or {}).items()}))
        write_log(self.path, self.rows)
        accuracy = float((logs or {}).get("val_accuracy", float("-inf")))
        if self.save_best and accuracy > self.best:  # as ModelCheckpoint(save_best_only=True)
            self.best = accuracy
            save_weights(model, self.best_path)

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:
            self.start(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.end(epoch, logs, self.model)


def progress_verbosity(verbose):
    """Keras' `verbose` for fit and search: "auto" is a progress bar on a
    terminal and one line per epoch when the output goes to a file or pipe."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() else 2


def plot_curves(rows, path):
    """Loss and accuracy per epoch, train and validation, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + metric) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def architecture(net):
    """The config of a built Mixer as `Mixer(config)` takes it, with the widths it
    really has (a token MLP tiled for a higher resolution is wider than its variant's)."""
    from keras_mixer.layers import MixerBlock

    blocks = [layer for layer in net._flatten_layers() if isinstance(layer, MixerBlock)]
    stem = net.get_layer("stem")
    return dict(num_blocks=len(blocks), patch_size=int(stem.kernel_size[0]), hidden_dim=int(stem.filters),
                tokens_mlp_dim=blocks[0].tokens_mlp_dim, channels_mlp_dim=blocks[0].channels_mlp_dim)


def load_run(output_dir, *, weights="best"):
    """The model of the `keras-mixer train` run in `output_dir`, rebuilt from its
    run_config.json: with the best epoch's weights ("best", best.weights.h5) or the
    last ones ("last": model.keras of a finished run, else the backup of a run that
    is still going or was killed). Returns an uncompiled `keras.Model`."""
    from keras_mixer.model import Mixer
    from keras_mixer.training import backup

    if weights not in ("best", "last"):
        raise ValueError(f"weights: expected 'best' or 'last'; got {weights!r}")
    config = _read_run_config(output_dir) if os.path.isdir(output_dir) else None
    if config is None:
        raise FileNotFoundError(f"output_dir: no {RUN_CONFIG} in {output_dir!r}; expected the "
                                f"directory of a keras-mixer train run")
    if weights == "last" and _exists(output_dir, METRICS):
        return keras.models.load_model(os.path.join(output_dir, MODEL))
    if weights == "best":
        path = os.path.join(output_dir, BEST)
    else:
        path = backup.committed_weights(os.path.join(output_dir, BACKUP))
    if path is None or not os.path.exists(path):
        raise FileNotFoundError(f"weights: the run in {output_dir!r} has no {weights} weights yet "
                                f"(it has not finished an epoch)")
    hp, size = config["hparams"], config["hparams"]["image_size"]
    net = Mixer(config["architecture"], input_shape=(size, size, 3), classes=config["num_classes"],
                dropout=hp["dropout"], drop_path_rate=hp["drop_path_rate"])
    net.load_weights(path)
    return net


LOCK = ".lock"


@contextlib.contextmanager
def locked(directory):
    """Holds an exclusive flock on DIRECTORY/.lock (holding this PID) for the run.
    The kernel drops it when the process dies, so a killed run leaves nothing stale."""
    if os.path.lexists(directory) and not os.path.isdir(directory):
        yield  # prepare() refuses it, naming the argument
        return
    os.makedirs(directory, exist_ok=True)

    def refuse(holder):
        raise ValueError(
            f"output_dir: {directory!r} is in use by another run (PID {holder}); wait for "
            f"it to end or choose another --output-dir")

    with files.pid_lock(os.path.join(directory, LOCK), busy=refuse):
        yield
