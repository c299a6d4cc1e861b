"""The training state in OUTPUT_DIR/backup/, written so that a kill at any moment
leaves a state a rerun can resume from.

Keras' `BackupAndRestore` writes `latest.weights.h5` and `training_metadata.json`
in place: a kill while either is written leaves a file that every rerun fails
on. Here each epoch's weights (with the optimizer state) go to their own file
through a temporary name and a rename (`keras_mixer.files`), and then
`training_metadata.json`, which names that file, is renamed into place: that
rename commits the backup. The previous commit stays beside it as a fallback
(`training_metadata.json.bkp` and its weights file).

    backup/training_metadata.json       {"epoch": 3, "batch": 0, "weights": "epoch-3.weights.h5"}
    backup/training_metadata.json.bkp   the commit before, with its weights file

`keras.Model.fit` and the multi-worker loop (multiworker.py) both use this
format, so a run resumes across them.
"""

import glob
import json
import os
import re
import shutil

import keras

from keras_mixer import files
from keras_mixer.training import outputs

METADATA = "training_metadata.json"
FALLBACK = METADATA + ".bkp"
LEGACY_WEIGHTS = "latest.weights.h5"  # Keras' own name, for backups it wrote


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with this module's commit protocol.

    It never deletes the backup: the caller removes it (`remove`) once the run's
    final outputs exist, so a kill after the last epoch does not train it again.
    Put it last among the callbacks, so the epoch's log row and best weights are
    on disk before the backup says the epoch is done.
    """

    def __init__(self, backup_dir, *, keep=()):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.keep = keep

    def on_train_begin(self, logs=None):
        # Keras' version copies the .bkp files back in place on an OSError; restore()
        # falls back without writing anything.
        self._load_model()

    def _load_model(self):
        self.model._initial_epoch = restore(self.model, self.backup_dir, keep=self.keep)

    def _save_model(self):
        save(self.model, self.backup_dir, self._current_epoch)


def save(model, backup_dir, epoch):
    """Commits the state of `model` (weights and optimizer) after `epoch` epochs."""
    os.makedirs(backup_dir, exist_ok=True)
    name = f"epoch-{epoch}.weights.h5"
    with files.atomic_path(os.path.join(backup_dir, name),
                           room=outputs.saved_variables(model)) as tmp:
        model.save_weights(tmp)
    current = os.path.join(backup_dir, METADATA)
    if os.path.exists(current):
        with open(current, "rb") as f:
            files.write_bytes(os.path.join(backup_dir, FALLBACK), f.read())
    files.write_bytes(current, json.dumps(dict(epoch=epoch, batch=0, weights=name)).encode())
    _remove_unreferenced(backup_dir)


def restore(model, backup_dir, *, set_aside_unreadable=True, keep=()):
    """Loads the last commit into `model` (its optimizer built first) and returns
    its epoch count; 0 when there is none. A commit that cannot be read falls
    back to the one before; when neither can be read, the backup is set aside
    as backup.unreadable-N with copies of the `keep` files (or, with
    `set_aside_unreadable=False`, left alone) and training starts again from
    epoch 0. Each case prints what happened."""
    if not os.path.isdir(backup_dir):
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables are in the file
    problems = []
    for name in (METADATA, FALLBACK):
        path = os.path.join(backup_dir, name)
        if not os.path.exists(path):
            continue
        try:
            epoch, weights = _read_commit(backup_dir, path)
            _check_h5(weights)  # before any variable is assigned
            model.load_weights(weights)
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path} cannot be read ({type(err).__name__}: {err})")
            continue
        if problems:
            print(f"backup: {problems[0]}; using the commit before it")
        print(f"resuming from the backup after epoch {epoch}")
        return epoch
    if not _contents(backup_dir):
        return 0
    reason = "; ".join(problems) or f"no {METADATA} in it"
    if not set_aside_unreadable:
        print(f"backup: {backup_dir} cannot be used ({reason}); training starts from epoch 0")
        return 0
    aside = set_aside(backup_dir, keep)
    print(f"backup: {backup_dir} cannot be used ({reason}); set aside as {aside}, "
          f"training starts from epoch 0")
    return 0


def set_aside(backup_dir, extra=()):
    """Renames `backup_dir` to backup.unreadable-N beside it (with copies of the
    `extra` files, e.g. the log of the epochs it held) and returns the new path."""
    n = 1
    while os.path.lexists(f"{backup_dir}.unreadable-{n}"):
        n += 1
    aside = f"{backup_dir}.unreadable-{n}"
    os.rename(backup_dir, aside)
    for path in extra:
        if os.path.exists(path):
            shutil.copy2(path, aside)
    return aside


def committed_weights(backup_dir):
    """The weights file of the last commit, or None when there is none."""
    try:
        return _read_commit(backup_dir, os.path.join(backup_dir, METADATA))[1]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(backup_dir):
    """Deletes the backup: call it once the run's final outputs exist."""
    shutil.rmtree(backup_dir, ignore_errors=True)


def _read_commit(backup_dir, path):
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    epoch = meta["epoch"]
    if not (isinstance(epoch, int) and epoch >= 0):
        raise ValueError(f"epoch: expected an int >= 0; got {epoch!r}")
    weights = os.path.join(backup_dir, os.path.basename(meta.get("weights", LEGACY_WEIGHTS)))
    return epoch, weights


def _check_h5(path):
    """Reads every array of a .weights.h5 file: a truncated or corrupt file fails
    here, before `load_weights` has overwritten part of the model."""
    import h5py
    import numpy as np

    def read(_, item):
        if isinstance(item, h5py.Dataset):
            np.asarray(item)

    with h5py.File(path, "r") as f:
        f.visititems(read)


def _contents(backup_dir):
    # Temporary files of an interrupted write are not part of any commit.
    return [n for n in os.listdir(backup_dir) if ".partial" not in n]


def _remove_unreferenced(backup_dir):
    keep = {METADATA, FALLBACK}
    for name in keep.copy():
        try:
            keep.add(os.path.basename(_read_commit(backup_dir, os.path.join(backup_dir, name))[1]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for path in glob.glob(os.path.join(backup_dir, "*")) + glob.glob(os.path.join(backup_dir, ".*")):
        name = os.path.basename(path)
        if name not in keep and _ours(name) and os.path.isfile(path):
            os.remove(path)  # older epochs, and temporary files of interrupted writes


def _ours(name):
    """Only what `save` writes: epoch files and their temporaries (atomic_path's
    `.NAME.partial.*`), never a file someone else put in the folder."""
    if re.fullmatch(r"epoch-\d+\.weights\.h5", name):
        return True
    return re.fullmatch(r"\.(epoch-\d+\.weights\.h5|%s|%s)\.partial\..*"
                        % (re.escape(METADATA), re.escape(FALLBACK)), name) is not None
