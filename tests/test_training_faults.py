"""Training loses nothing (issue 14, items 1 and 2): `keras-mixer train` is
stopped at the moment that matters and killed, then run again.

The child process freezes itself (SIGSTOP) at a chosen moment, through a patch
on the Keras method that runs then; the test sees the marker file and sends
SIGKILL, so nothing after that moment runs. The rerun is in-process (same
arguments), as a user would run the same command again."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import TINY

from keras_mixer import cli

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
STEPS = 1437 // 64  # training steps per epoch: embedded digits, batch 64

CHILD = textwrap.dedent("""
    import os, signal, sys
    import keras

    moment, at_epoch, marker, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

    def freeze():
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGSTOP)  # the test sends SIGKILL

    if moment == "writing_backup_weights":  # half the file on disk, as a kill mid-write leaves it
        save_weights = keras.Model.save_weights
        def patched(self, filepath, *args, **kwargs):
            save_weights(self, filepath, *args, **kwargs)
            if os.path.basename(os.path.dirname(os.fspath(filepath))) == "backup":
                os.truncate(filepath, os.path.getsize(filepath) // 2)
                freeze()
        keras.Model.save_weights = patched
    elif moment == "after_backup":  # the epoch's backup is written, nothing after it yet
        on_epoch_end = keras.callbacks.BackupAndRestore.on_epoch_end
        def patched(self, epoch, logs=None):
            on_epoch_end(self, epoch, logs)
            if epoch + 1 == at_epoch:
                freeze()
        keras.callbacks.BackupAndRestore.on_epoch_end = patched
    elif moment == "after_last_epoch":  # fit has returned; no final output written yet
        on_train_end = keras.callbacks.BackupAndRestore.on_train_end
        def patched(self, logs=None):
            on_train_end(self, logs)
            freeze()
        keras.callbacks.BackupAndRestore.on_train_end = patched
    from keras_mixer import cli
    sys.exit(cli.main(argv))
""")


def train_argv(out, epochs=2, *extra):
    return ["train", "--model", json.dumps(TINY), "--image-size", "16", "--batch-size", "64",
            "--warmup-steps", "0", "--epochs", str(epochs), "--output-dir", str(out), *extra]


def kill_at(moment, argv, tmp_path, at_epoch=1):
    """Runs `keras-mixer ARGV` in a child, freezes it at `moment`, SIGKILLs it."""
    marker, log = tmp_path / f"frozen-{moment}", tmp_path / f"child-{moment}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, moment, str(at_epoch), str(marker), *argv],
                                env=ENV, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert marker.exists(), f"the child never reached {moment}: {log.read_text()[-3000:]}"


def logged_epochs(out):
    return [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]


def rerun(argv, capsys):
    """The same command again, in-process: (metrics.json, what it printed)."""
    capsys.readouterr()
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    out = argv[argv.index("--output-dir") + 1]
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f), captured.out + captured.err


def test_killed_while_the_first_backup_is_written(tmp_path, capsys):
    # 2a: Keras wrote latest.weights.h5 in place: half a file, and every rerun failed
    # with an HDF5 "truncated file" error.
    out = tmp_path / "run"
    argv = train_argv(out)
    kill_at("writing_backup_weights", argv, tmp_path)
    assert not (out / "metrics.json").exists()
    metrics, _ = rerun(argv, capsys)
    assert logged_epochs(out) == [0, 1]
    assert metrics["train_steps"] == 2 * STEPS
    assert not (out / "backup").exists()


@pytest.fixture(scope="module")
def killed_after_second_backup(tmp_path_factory):
    """(argv, output dir) of a 3-epoch run frozen right after its second epoch's
    backup and killed; tests copy the directory before they change it."""
    tmp_path = tmp_path_factory.mktemp("killed")
    argv = train_argv(tmp_path / "run", 3)
    kill_at("after_backup", argv, tmp_path, at_epoch=2)
    return argv, tmp_path / "run"


def copy_of(killed, tmp_path):
    argv, out = killed
    shutil.copytree(out, tmp_path / "run")
    return [str(tmp_path / "run") if a == str(out) else a for a in argv], tmp_path / "run"


def test_killed_after_a_backup_keeps_its_log_row_and_resumes(killed_after_second_backup, tmp_path,
                                                              capsys):
    # 2b: the backup was written before that epoch's log.csv row: a kill between
    # them lost the row for good.
    argv, out = copy_of(killed_after_second_backup, tmp_path)
    meta = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2 and logged_epochs(out) == [0, 1]  # every backed-up epoch is logged
    # And the last commit unreadable (Keras: a JSONDecodeError on every rerun
    # although the .bkp was intact): the rerun falls back to the one before.
    (out / "backup" / "training_metadata.json").write_text('{"epoch": 2, "wei')
    metrics, printed = rerun(argv, capsys)
    assert "cannot be read" in printed and "resuming from the backup after epoch 1" in printed
    assert logged_epochs(out) == [0, 1, 2]  # each epoch once
    assert metrics["epochs_this_session"] == 2 and metrics["train_steps"] == 3 * STEPS


def test_unreadable_backup_is_set_aside_with_a_message(killed_after_second_backup, tmp_path, capsys):
    # No commit readable: the backup is moved aside (with the log of its epochs),
    # and the run says so and starts again, instead of failing on every rerun.
    argv, out = copy_of(killed_after_second_backup, tmp_path)
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        (out / "backup" / name).write_text("{")
    metrics, printed = rerun(argv, capsys)
    aside = out / "backup.unreadable-1"
    assert f"set aside as {aside}" in printed and "starts from epoch 0" in printed
    assert (aside / "training_metadata.json").read_text() == "{" and (aside / "log.csv").exists()
    assert metrics["epochs_this_session"] == 3 and logged_epochs(out) == [0, 1, 2]


def test_killed_after_the_last_epoch_does_not_train_again(tmp_path, capsys):
    # 2c: backup/ was deleted when fit returned, before metrics.json existed: the
    # rerun trained every epoch again (300 for the paper's recipe).
    out = tmp_path / "run"
    argv = train_argv(out)
    kill_at("after_last_epoch", argv, tmp_path)
    assert not (out / "metrics.json").exists() and (out / "backup").is_dir()
    metrics, printed = rerun(argv, capsys)
    assert "resuming from the backup after epoch 2" in printed
    assert metrics["epochs_this_session"] == 0 and metrics["train_steps"] == 2 * STEPS
    assert logged_epochs(out) == [0, 1] and not (out / "backup").exists()


def test_overwrite_keeps_the_old_run_until_the_new_one_trained_an_epoch(tmp_path, capsys):
    # 1: --overwrite deleted the finished run first, then refused a bad --dataset,
    # or lost it to a kill before the new run had trained anything.
    out = tmp_path / "run"
    assert cli.main(train_argv(out, 1)) == 0
    old = (out / "metrics.json").read_text()
    refused = [
        (["--dataset", f"folder:{tmp_path / 'missing'}"], "dataset: no such folder"),
        (["--batch-size", "5000"], "batch_size: the global batch 5000 is larger than the 1437"),
    ]
    for flags, message in refused:
        capsys.readouterr()
        assert cli.main(train_argv(out, 1, "--overwrite", *flags)) == 2
        assert message in capsys.readouterr().err
        assert (out / "metrics.json").read_text() == old and (out / "model.keras").exists()
    new = train_argv(out, 1, "--overwrite", "--learning-rate", "0.001")
    kill_at("writing_backup_weights", new, tmp_path)
    assert (out / ".previous" / "metrics.json").read_text() == old  # kept aside, intact
    assert (out / ".previous" / "model.keras").exists() and not (out / "metrics.json").exists()
    # The same command again: the new run trains, and then the old one is gone.
    metrics, _ = rerun(new, capsys)
    assert not (out / ".previous").exists() and metrics["epochs"] == 1
    assert json.loads((out / "run_config.json").read_text())["hparams"]["learning_rate"] == 0.001


def test_overwrite_never_deletes_files_it_did_not_write(tmp_path, capsys):
    # 1: without run_config.json, --overwrite rmtree'd any logs/ or backup/ it found.
    out = tmp_path / "mine"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "notes.txt").write_text("my notes")
    (out / "backup").mkdir()
    assert cli.main(train_argv(out, 1, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "holds backup, logs but no run_config.json: keras-mixer did not write them" in err
    assert (out / "logs" / "notes.txt").read_text() == "my notes" and (out / "backup").is_dir()
    (out / "run_config.json").write_text('{"my": "own file"}')
    assert cli.main(train_argv(out, 1, "--overwrite")) == 2
    assert "is not a keras-mixer run configuration" in capsys.readouterr().err
    assert (out / "run_config.json").read_text() == '{"my": "own file"}'


def test_a_failed_overwrite_puts_the_old_run_back(tmp_path, capsys, monkeypatch):
    # An --overwrite run that fails before its first epoch ends (here: while its
    # model is built) leaves the old run where it was.
    from keras_mixer.training import trainer

    out = tmp_path / "run"
    assert cli.main(train_argv(out, 1)) == 0
    old = (out / "metrics.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(trainer, "build_model", broken)
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="out of memory, say"):
        cli.main(train_argv(out, 1, "--overwrite", "--learning-rate", "0.001"))
    assert "put back the previous run" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == old and not (out / ".previous").exists()
    assert json.loads((out / "run_config.json").read_text())["hparams"]["learning_rate"] == 0.003
