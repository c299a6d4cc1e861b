"""Faults of the machine (issue #19 items 9-11): a mirror that never answers, a
busy run directory, a full disk (RLIMIT_FSIZE in a child) for files and commands."""

import os
import socket
import time

import numpy as np
import pytest
from helpers import key_parts

from keras_mixer.weights import download


def test_a_mirror_that_accepts_and_never_answers_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv(download.TIMEOUT_ENV, "2")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # the kernel accepts the connection; nobody ever answers
    port = server.getsockname()[1]
    previous = socket.getdefaulttimeout()
    start = time.monotonic()
    try:
        with pytest.raises(Exception, match="(?i)timed out"):
            download.fetch_url(f"http://127.0.0.1:{port}/x.npz", "x.npz", cache_dir=str(tmp_path),
                               cache_subdir="c", check=lambda path: None)
    finally:
        server.close()
    assert time.monotonic() - start < 30
    assert socket.getdefaulttimeout() == previous
    # Neither a partial nor a final file; the download's lock file stays (as pip's and
    # huggingface_hub's do: removing a flock file races with its next user).
    assert [n for n in os.listdir(tmp_path / "c") if n.startswith("x.npz")] == ["x.npz.lock"]


def test_download_timeout_refuses_a_bad_value(monkeypatch):
    monkeypatch.setenv(download.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=key_parts(download.TIMEOUT_ENV, "positive", "'soon'")):
        download.download_timeout()


def test_a_second_run_into_a_busy_output_dir_is_refused_naming_the_holder(tmp_path):
    pytest.importorskip("tensorflow")
    import subprocess
    import sys

    from keras_mixer.training import outputs, train

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from keras_mixer.training import outputs\n"
         "with outputs.locked(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=key_parts("output_dir", str(tmp_path), f"PID {holder.pid}")):
            train(output_dir=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with outputs.locked(str(tmp_path)):  # a killed holder leaves no stale lock
        pass


HOLD_LOCK = """
import sys, time
from keras_mixer import files
with files.pid_lock(sys.argv[1], busy=lambda pid: sys.exit(f"busy: {pid}")):
    print("held", flush=True)
    time.sleep(120)
"""

FETCH = """
import sys
from keras_mixer.weights import download
print(download.fetch_url(sys.argv[1], "w.npz", cache_dir=sys.argv[2], cache_subdir="c",
                         check=lambda path: None))
"""


def test_a_download_waiting_on_a_stuck_holder_gives_up_naming_its_pid(tmp_path):
    # The holder keeps the cache file's lock and never downloads: the second fetch
    # waits a bounded time, then names the holder; once the holder is killed, its
    # lock is free and the fetch completes.
    import subprocess
    import sys

    source = tmp_path / "src.npz"
    source.write_bytes(b"weights")
    cache = tmp_path / "cache"
    (cache / "c").mkdir(parents=True)
    lock = cache / "c" / "w.npz.lock"
    env = dict(os.environ, **{download.TIMEOUT_ENV: "1"})
    argv = [sys.executable, "-c", FETCH, source.as_uri(), str(cache)]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, done.stdout
        assert time.monotonic() - start < 30
        assert "TimeoutError" in done.stderr, done.stderr[-2000:]
        assert f"PID {holder.pid}" in done.stderr and str(lock) in done.stderr, done.stderr[-2000:]
        assert not (cache / "c" / "w.npz").exists()
    finally:
        holder.kill()
        holder.wait()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (cache / "c" / "w.npz").read_bytes() == b"weights"


def test_backup_clean_up_deletes_only_what_it_wrote(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from keras_mixer.training import backup

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    foreign = ["notes.txt", ".other.keras.partial.abc.keras", "epoch-x.weights.h5"]
    for name in foreign:
        (tmp_path / name).write_text("not ours")
    (tmp_path / ".epoch-0.weights.h5.partial.abc.weights.h5").write_text("ours, interrupted")
    backup.save(model, str(tmp_path), 1)
    backup.save(model, str(tmp_path), 2)
    backup.save(model, str(tmp_path), 3)  # epoch 2 stays as the fallback commit
    names = set(os.listdir(tmp_path))
    assert set(foreign) <= names
    assert "epoch-1.weights.h5" not in names and "epoch-3.weights.h5" in names
    assert ".epoch-0.weights.h5.partial.abc.weights.h5" not in names


DISK_FULL_CHILD = """
import resource, signal, sys
from keras_mixer import files
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    files.write_bytes(sys.argv[1], b"x" * 100000)
except OSError as err:
    print(err)
    sys.exit(2)
"""


def test_a_full_disk_leaves_the_previous_file_and_no_temporary(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "a.json"
    out.write_text("good")
    done = subprocess.run([sys.executable, "-c", DISK_FULL_CHILD, str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert str(out) in done.stdout and "disk full / file too large" in done.stdout
    assert out.read_text() == "good" and os.listdir(tmp_path) == ["a.json"]


def _under_file_size_limit(limit, argv, cwd):
    """The CLI run in a child whose files may not grow past `limit` bytes (the
    nearest stand-in for a full disk: writes fail with EFBIG)."""
    import resource
    import subprocess
    import sys

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "keras_mixer.cli", *argv], cwd=cwd, env=env,
                          preexec_fn=limited, capture_output=True, text=True, timeout=600)


def _partials(root):
    return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names if ".partial" in f]


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_convert_into_a_full_disk_exits_cleanly_and_keeps_the_old_file(tmp_path, tiny_checkpoint,
                                                                        suffix):
    path, _ = tiny_checkpoint
    out = tmp_path / f"o{suffix}"
    out.write_text("good")
    done = _under_file_size_limit(20_000, ["convert", path, "--output", str(out), "--overwrite"],
                                  tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(out) in done.stderr and "too large" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert out.read_text() == "good" and not _partials(tmp_path)


def test_train_into_a_full_disk_exits_cleanly_without_partial_files(tmp_path):
    # h5py crashed the process (signal 11) when best.weights.h5 failed half-way.
    run = tmp_path / "run"
    model = '{"num_blocks": 1, "patch_size": 8, "hidden_dim": 16, "tokens_mlp_dim": 8, "channels_mlp_dim": 16}'
    done = _under_file_size_limit(8_000, ["train", "--epochs", "1", "--model", model,
                                          "--output-dir", str(run)], tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert str(run / "best.weights.h5") in done.stderr and "too large" in done.stderr
    assert "Traceback" not in done.stderr
    assert not _partials(tmp_path) and not (run / "best.weights.h5").exists()


def test_room_is_checked_against_the_free_space(tmp_path, monkeypatch):
    import collections
    import shutil

    from keras_mixer import files

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "w.weights.h5"
    with pytest.raises(OSError, match=key_parts(str(out), "disk full", "1,000 free")):
        with files.atomic_path(out, room=[np.zeros((100, 100), np.float32)]):
            raise AssertionError("the writer ran on a full disk")
    assert os.listdir(tmp_path) == []


def test_export_saved_model_into_a_full_disk_keeps_the_previous_version(tmp_path):
    pytest.importorskip("tensorflow")
    from helpers import tiny_mixer

    tiny_mixer().save(tmp_path / "m.keras")
    old = tmp_path / "sm" / "1"
    old.mkdir(parents=True)
    (old / "saved_model.pb").write_text("good")
    done = _under_file_size_limit(20_000, ["export", "saved-model", "m.keras", "--output", "sm",
                                           "--overwrite"], tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert str(old) in done.stderr and "too large" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert os.listdir(tmp_path / "sm") == ["1"] and os.listdir(old) == ["saved_model.pb"]
    assert (old / "saved_model.pb").read_text() == "good" and not _partials(tmp_path)
