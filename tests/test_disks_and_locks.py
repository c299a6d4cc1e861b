"""Faults of the machine (issue #19 items 9-11): a mirror that never answers."""

import os
import socket
import time

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
    assert not [n for n in os.listdir(tmp_path / "c") if n.startswith("x.npz")]


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
