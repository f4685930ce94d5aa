"""``save`` and ``load``: npz files of arrays and numbers, written atomically, read without pickle.

``atomic_output`` is the atomic write itself, for any file a program rewrites (csv, png).
"""
import os
import tempfile
import zipfile
from contextlib import contextmanager

import numpy

from . import backend


def _as_saveable(name, value):
    value = backend.to_numpy(value.detach() if hasattr(value, "detach") else value)
    if value.dtype == object:
        raise TypeError(f"minidl.save: entry '{name}' is not an array or number (got {type(value).__name__}); "
                        "checkpoints hold only arrays and numbers so loading never unpickles")
    return value


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_npz(stream, arrays):
    """The npz format: a zip of ``<name>.npy`` members, each written with pickling disallowed."""
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                numpy.lib.format.write_array(member, numpy.asanyarray(value), allow_pickle=False)


def probe_writable(folder):
    """Create and remove a temporary file in the existing ``folder``: raises ``OSError`` where this process cannot
    write there (what ``atomic_output`` will need), checked before any long work."""
    handle, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
    os.close(handle)
    os.remove(probe)


@contextmanager
def atomic_output(path):
    """Yield a temporary path in ``path``'s folder to write to; on success it replaces ``path``.

    The temporary file has ``path``'s suffix, so writers that pick the format from the name
    (matplotlib, PIL) keep it. After the block it is flushed to disk and renamed over ``path``;
    if the block raises, it is removed and ``path`` keeps its old content.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "r+b") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save(path, state):
    """Write a flat dict of name -> array (or number, or string) to ``path`` as npz.

    The file is written through ``atomic_output``, so a crash never leaves a half-written file.
    """
    arrays = {str(name): _as_saveable(name, value) for name, value in state.items()}
    with atomic_output(path) as temporary, open(temporary, "wb") as stream:
        _write_npz(stream, arrays)


NPZ_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first member, or an empty zip
NPY_MAGIC = b"\x93NUMPY"


def _check_archive(path):
    """Raise ``ValueError`` unless ``path`` starts as an npz (zip) archive does: a clear message, never numpy's."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(NPY_MAGIC))
    except OSError as error:
        raise ValueError(f"minidl.load: {path} cannot be read ({error.strerror or error})") from None
    if head.startswith(NPY_MAGIC):
        raise ValueError(f"minidl.load: {path} holds a single .npy array, not an npz archive")
    if not head.startswith(NPZ_MAGICS):
        raise ValueError(f"minidl.load: {path} is not an .npz archive written by minidl.save")


def _read_entry(archive, name, path):
    """One array of an open npz; an entry of pickled objects is refused, never unpickled."""
    try:
        return archive[name]
    except ValueError as error:
        if "pickle" in str(error):  # numpy refuses object arrays when allow_pickle=False
            raise ValueError(f"minidl.load: {path} holds pickled objects (entry '{name}'), "
                             "which minidl never loads") from None
        raise ValueError(f"minidl.load: {path}: entry '{name}' is not a readable array ({error})") from None


def load(path, keep=None):
    """Read an npz written by ``save`` into a dict of name -> ``numpy.ndarray`` (never unpickles).

    ``keep(name)``, when given, picks the entries to read; the others are not decompressed or read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"minidl.load: no such file: {path}")
    _check_archive(path)
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {name: _read_entry(archive, name, path) for name in archive.files if keep is None or keep(name)}
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"minidl.load: {path} is not a readable npz file ({error})") from None
