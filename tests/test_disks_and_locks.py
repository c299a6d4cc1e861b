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
