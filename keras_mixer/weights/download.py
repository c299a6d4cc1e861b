"""Fetching the authors' released files: `keras.utils.get_file` into Keras'
cache, atomically (a killed download leaves only a partial name behind), from
the authors' bucket or a mirror (`KERAS_MIXER_WEIGHTS_URL`: a URL or a local
directory laid out like the bucket)."""

import contextlib
import glob
import os
import socket
import sys
import time

from keras_mixer import files

from keras_mixer.weights.table import (BASE_URL, CACHE_SUBDIR, CHECKPOINTS, FILE_HASHES,
                                       HF_COPIES, MIRROR_ENV)


def get_weights_file(tag, variant, *, cache_dir=None):
    """Local path of a released `.npz`, downloading it on first use."""
    from keras_mixer.weights.npz import npz_headers

    relative = CHECKPOINTS[tag]["files"][variant]
    mirror = os.environ.get(MIRROR_ENV, "")
    if mirror and "://" not in mirror:  # a local directory with the bucket's layout
        path = os.path.join(mirror, relative)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{MIRROR_ENV}={mirror!r} is a directory, but {relative!r} is not in it "
                f"(expected {path!r}); copy {BASE_URL}{relative} there")
        return path
    origin = (mirror.rstrip("/") + "/" if mirror else BASE_URL) + relative
    fname = relative.replace("/", "_")
    try:
        return fetch_url(origin, fname, cache_dir=cache_dir, cache_subdir=CACHE_SUBDIR,
                         file_hash=FILE_HASHES.get(relative), check=npz_headers)
    except Exception as err:  # get_file raises bare Exception on URL errors
        target = os.path.join(cache_directory(cache_dir, CACHE_SUBDIR), fname)
        copy = HF_COPIES.get(relative)
        hint = f", or pass weights='hf://{copy}' (timm's copy)" if copy else ""
        raise OSError(
            f"weights: could not download the {tag!r} checkpoint of Mixer {variant} "
            f"from {origin} ({err}). Without network, fetch that file elsewhere and "
            f"put it at {target}, or set {MIRROR_ENV} to a directory holding "
            f"{relative}{hint}.") from err


def cache_directory(cache_dir, cache_subdir):
    """The folder `keras.utils.get_file` caches into: `cache_dir`, else Keras'
    home (KERAS_HOME or ~/.keras, read when Keras was imported); /tmp/.keras
    when that is not writable (as get_file decides). Only used to find a
    cached file before a download and to name the folder in messages: a
    download lands where get_file says."""
    root = os.path.expanduser(cache_dir or _keras_home())
    if not os.access(root, os.W_OK):
        root = os.path.join("/tmp", ".keras")
    return os.path.join(root, cache_subdir)


def _keras_home():
    try:  # what get_file itself uses (private accessor; docs/design.md lists it)
        from keras.src.backend.config import keras_home

        return keras_home()
    except ImportError:
        return os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))


def fetch_url(origin, fname, *, cache_dir=None, cache_subdir, file_hash=None, check):
    """`keras.utils.get_file` into the cache, atomically, re-fetching a cached
    file that `check(path)` refuses. Returns the path."""
    if cache_dir is not None:  # get_file silently falls back to /tmp if it is missing
        os.makedirs(cache_dir, exist_ok=True)
    cached = os.path.join(cache_directory(cache_dir, cache_subdir), fname)
    # One download per cache file at a time: a second process waits, then finds the
    # finished file; it gives up once the holder's download stalls (see _cache_lock).
    with _cache_lock(cached):
        return _fetch_unlocked(origin, fname, cached, cache_dir=cache_dir,
                               cache_subdir=cache_subdir, file_hash=file_hash, check=check)


@contextlib.contextmanager
def _cache_lock(cached):
    """An exclusive lock on CACHED.lock; none where the cache folder cannot be
    written (get_file then falls back elsewhere)."""
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        open(f"{cached}.lock", "a").close()
    except OSError:
        yield
        return

    def wait(holder):
        print(f"weights: waiting for PID {holder}, which is downloading {cached}",
              file=sys.stderr)

    # Bounded: the wait ends once the holder's partial file has not grown for the
    # download timeout (a holder that is stopped or stuck, not only a slow one).
    timeout = download_timeout()
    progress = {"size": None, "since": time.monotonic()}

    def stalled(holder):
        size = sum(os.path.getsize(p) for p in glob.glob(glob.escape(cached) + ".partial-*")
                   if os.path.isfile(p))
        now = time.monotonic()
        if size != progress["size"]:
            progress.update(size=size, since=now)
        elif now - progress["since"] > timeout:
            raise TimeoutError(
                f"weights: PID {holder} holds {cached}.lock and its download has not progressed "
                f"for {timeout:g} s ({TIMEOUT_ENV}); stop that process or retry later")

    with files.pid_lock(f"{cached}.lock", busy=wait, waiting=stalled):
        yield


def _fetch_unlocked(origin, fname, cached, *, cache_dir, cache_subdir, file_hash, check):
    import keras

    if os.path.isfile(cached):
        try:
            check(cached)
            return cached
        except ValueError as err:
            print(f"weights: the cached {cached} is unreadable ({err}); fetching it again",
                  file=sys.stderr)
            os.remove(cached)
    # A killed download leaves only this partial name behind, never the final one.
    partial = f"{fname}.partial-{os.getpid()}"
    # get_file's urllib has no timeout: a mirror that accepts and never answers would
    # hang forever. One try, bounded per connect and per read; restored after.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout())
    try:
        path = keras.utils.get_file(partial, origin=origin, cache_subdir=cache_subdir,
                                    cache_dir=cache_dir, file_hash=file_hash)
    finally:
        socket.setdefaulttimeout(previous)
    # Beside the partial file: the folder get_file chose (it may differ from
    # `cached`'s, e.g. where ~/.keras is missing or read-only and it fell back to /tmp).
    final = os.path.join(os.path.dirname(path), fname)
    try:
        check(path)
        os.replace(path, final)
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
    return final


TIMEOUT_ENV = "KERAS_MIXER_DOWNLOAD_TIMEOUT"


def download_timeout():
    """Seconds a download may wait to connect or for each read (default 60)."""
    text = os.environ.get(TIMEOUT_ENV, "60")
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV}: expected a positive number of seconds; got {text!r}")
    return value
