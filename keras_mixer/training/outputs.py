"""What a training run leaves in its output directory, and how a re-run reads it.

    run_config.json   everything that defines the run; a re-run must match it
    backup/           BackupAndRestore state (deleted when the run finishes)
    log.csv           one row per epoch (CSVLogger), kept consistent across resumes
    logs/             TensorBoard
    best.weights.h5   best epoch by validation accuracy (ModelCheckpoint)
    model.keras       the final model, without optimizer state
    metrics.json      final metrics; its presence marks a finished run
    curves.png        loss and accuracy per epoch
"""

import csv
import json
import os
import shutil

import keras

RUN_CONFIG = "run_config.json"
METRICS = "metrics.json"
LOG_CSV = "log.csv"
# Other workers of a cluster keep theirs in .workers/<task>/, each its own business.
ARTIFACTS = (RUN_CONFIG, "backup", LOG_CSV, "logs", "best.weights.h5", "model.keras", METRICS,
             "curves.png")
# May change between a run and its resumption: where and how it runs, not what it learns.
RESUMABLE_KEYS = ("strategy", "jit_compile", "data_dir", "verbose")


def prepare(output_dir, config, overwrite):
    """Checks `output_dir` against `config`. Returns the finished run's metrics
    when the same run already finished there, else None (start or resume)."""
    path = os.path.join(output_dir, RUN_CONFIG)
    if overwrite:
        for name in ARTIFACTS:
            target = os.path.join(output_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        return None
    if not os.path.exists(path):
        if os.path.isdir(output_dir) and any(n in os.listdir(output_dir) for n in ARTIFACTS):
            raise ValueError(f"output_dir: {output_dir!r} holds files of a run without {RUN_CONFIG}; "
                             f"pass --overwrite to replace them or choose another --output-dir")
        return None
    with open(path, encoding="utf-8") as f:
        previous = json.load(f)
    before, now = _comparable(previous), _comparable(config)
    changed = {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)}
    if changed:
        diff = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise ValueError(
            f"output_dir: {output_dir!r} holds a run with a different configuration ({diff}); "
            f"refusing to mix them. Use another --output-dir, or pass --overwrite to start over")
    metrics = os.path.join(output_dir, METRICS)
    if os.path.exists(metrics):
        with open(metrics, encoding="utf-8") as f:
            return json.load(f)
    return None


def _comparable(config):
    # JSON round trip, so tuples and lists compare equal; nested dicts (the
    # recipe) are flattened so a message names the one field that changed.
    flat = {}
    for key, value in json.loads(json.dumps(config)).items():
        if key in RESUMABLE_KEYS:
            continue
        if isinstance(value, dict) and key != "model":
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def write_json(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a kill never leaves half a file


def read_log(path):
    """Rows of a CSVLogger file as dicts of floats (empty if absent)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


class ResumeLog(keras.callbacks.Callback):
    """Keeps log.csv to one row per epoch across kills and resumes.

    Runs after BackupAndRestore has restored the state: rows of epochs that
    will be trained again (written after the last backup) are dropped."""

    def __init__(self, log_path, metadata_path):
        super().__init__()
        self.log_path, self.metadata_path = log_path, metadata_path

    def on_train_begin(self, logs=None):
        start = 0
        if os.path.exists(self.metadata_path):
            with open(self.metadata_path, encoding="utf-8") as f:
                start = json.load(f)["epoch"]
        if not os.path.exists(self.log_path):
            return
        with open(self.log_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < start]
        if start == 0:
            kept = []  # a fresh start: CSVLogger writes a new header
        with open(self.log_path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(kept)
        if start:
            print(f"resuming from the backup after epoch {start}")


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
    fig.savefig(path, dpi=100)
    plt.close(fig)
