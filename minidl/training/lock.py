"""``folder_lock``: one writer per run folder, held with an OS-level lock that dies with its process.

On POSIX the folder itself is locked (``fcntl.flock`` on the open folder), so nothing is left behind;
on Windows a ``.lock`` file in it is locked with ``msvcrt``. The lock is released when the process
ends, however it ends (kill -9 included), so a crashed run never leaves a stale lock. Holding it,
a run also removes the temporary files (``.tmp-*``) a dead writer left in the folder.
"""
import errno
import os
from contextlib import contextmanager

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_FILE = ".lock"  # Windows only: the file whose first byte is locked
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL)  # no locks on this file system


def _try_lock(handle):
    """Lock the open ``handle`` without waiting; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except OSError as error:
        if fcntl is None and error.errno in (errno.EACCES, errno.EDEADLK):  # how msvcrt says "held"
            return False
        raise
    return True


def _locked_handle(folder):
    """An open handle on ``folder`` (POSIX) or its lock file (Windows), locked; None when another process
    holds the lock. Raises ``OSError`` when the folder cannot be opened."""
    if fcntl is not None:
        handle = os.open(folder, os.O_RDONLY)
    else:
        handle = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT)
    try:
        if _try_lock(handle):
            return handle
    except OSError as error:
        if error.errno in UNSUPPORTED:
            return handle  # a file system without locks: run unlocked
        os.close(handle)
        raise
    os.close(handle)
    return None


def remove_leftover_temporaries(folder):
    """Remove the ``.tmp-*`` files of ``atomic_output`` that a killed writer left in ``folder``; returns their names."""
    leftovers = sorted(name for name in os.listdir(folder) if name.startswith(".tmp-"))
    for name in leftovers:
        os.remove(os.path.join(folder, name))
    return leftovers


@contextmanager
def folder_lock(folder, option="--out"):
    """Hold ``folder`` (created if needed) for this process within the block; another holder is a ``ConfigError``.

    A folder this call created and that is still empty at the end is removed again, so a run refused for
    bad input leaves nothing behind. A file system without locks (some network shares) runs unlocked.
    """
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    handle = _locked_handle(folder)
    if handle is None:
        _remove_if_created(folder, created)
        raise ConfigError(f"{option} {folder} is in use by another train_lung.py process (a run, a resume or a "
                          "predict writing there); wait until it ends or choose another folder")
    try:
        remove_leftover_temporaries(folder)
        yield
    finally:
        os.close(handle)
        _remove_if_created(folder, created)


def _remove_if_created(folder, created):
    """Remove ``folder`` if this process created it and it is still empty."""
    if created:
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty: the run wrote its outputs
