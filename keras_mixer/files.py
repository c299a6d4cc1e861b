"""Output files: refuse to replace without `overwrite`, and write atomically.

Every file keras-mixer writes goes to a temporary name in the same directory
and is renamed into place, so a killed process or a full disk never leaves a
half-written file at the final path.
"""

import contextlib
import errno
import os
import shutil
import tempfile
import time


try:
    import fcntl
    import resource
except ImportError:  # Windows: no file-size limit to read, no locks
    fcntl = resource = None


def check_output(output, *, overwrite, suffix=None, arg="output"):
    """Raises unless `output` may be written: the right suffix, and either new
    or `overwrite` given. `suffix` may be a string or a tuple of strings."""
    if suffix and not (isinstance(output, str) and output.endswith(suffix)):
        allowed = " or ".join(suffix) if isinstance(suffix, tuple) else suffix
        raise ValueError(f"{arg}: expected a path ending in {allowed}; got {output!r}")
    if not isinstance(output, (str, os.PathLike)) or not os.fspath(output):
        raise ValueError(f"{arg}: expected a path; got {output!r}")
    if os.path.lexists(output) and not overwrite:
        raise FileExistsError(f"{arg}: {output!r} exists; pass --overwrite to replace it")


def nbytes(variables):
    """Bytes of the values of `variables` (anything with .shape and .dtype)."""
    import numpy as np

    total = 0
    for v in variables:
        try:
            size = np.dtype(str(v.dtype)).itemsize
        except TypeError:  # bfloat16 and other names NumPy lacks
            size = 4
        total += size * int(np.prod(tuple(v.shape), dtype=np.int64))
    return total


def check_room(path, size, *, variables=0):
    """Raises OSError(ENOSPC) naming `path` unless its file system has room for
    a file of about `size` bytes (plus an HDF5 header per variable) and the
    process's file-size limit (RLIMIT_FSIZE) allows it. h5py can crash the
    process when a write fails half-way (a full disk), so files it writes are
    checked before the first byte."""
    need = int(size) + 65536 + 2048 * int(variables)
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    free = shutil.disk_usage(parent).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
    if limit not in (-1, getattr(resource, "RLIM_INFINITY", -1)) and need > limit:
        raise OSError(errno.EFBIG, f"{path}: not written, file too large: about {need:,} bytes "
                                   f"needed, the process's file-size limit is {limit:,}; the "
                                   f"previous file, if any, is unchanged")
    if need > free:
        raise OSError(errno.ENOSPC, f"{path}: not written, disk full: about {need:,} bytes "
                                    f"needed, {free:,} free in {parent}; the previous file, "
                                    f"if any, is unchanged")


@contextlib.contextmanager
def atomic_path(path, *, directory=False, room=None):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    With `directory=True` the temporary path is a fresh directory and an old
    `path` directory is replaced only once the new one is complete. `room`:
    the variables about to be written (`check_room` before anything is).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if room is not None:
        room = list(room)
        check_room(path, nbytes(room), variables=len(room))
    # Keep the final suffix: Keras picks the format from it (.keras, .weights.h5).
    base = os.path.basename(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".partial", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.partial.", suffix=_suffix(base), dir=parent)
        os.close(fd)
        os.unlink(tmp)  # writers such as h5py want to create the file themselves
    try:
        yield tmp
        if directory and os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rename(path, os.path.join(old, base))
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
        if _disk_full(err):
            raise OSError(errno.ENOSPC, f"{path}: not written, disk full / file too large "
                          f"({err}); the previous file, if any, is unchanged") from err
        raise


def _disk_full(err):
    """ENOSPC/EFBIG anywhere in the chain, or h5py's wrapping of them (message only)."""
    while err is not None:
        if getattr(err, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if isinstance(err, Exception) and any(
                m in str(err) for m in ("No space left", "File too large", "Disk quota")):
            return True
        err = err.__cause__ or err.__context__
    return False


def _suffix(name):
    for suffix in (".weights.h5", ".keras", ".tflite", ".json", ".npz", ".h5"):
        if name.endswith(suffix):
            return suffix
    return ""


def write_bytes(path, data):
    """Writes `data` to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def pid_lock(path, *, busy, waiting=None):
    """Holds an exclusive flock on `path` (created, holding this PID). When
    another process holds it, `busy(pid_text)` is called first: it raises to
    refuse, or returns to wait for the holder; while waiting, `waiting(pid_text)`
    is called about 4 times a second and raises to give up (without it the wait
    has no bound). The kernel drops the lock when its process dies, so a killed
    holder leaves nothing stale. Without fcntl (Windows) nothing is locked."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            busy(holder)
            if waiting is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while not _try_flock(fd):
                    waiting(holder)
                    time.sleep(0.25)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _try_flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
