"""``save`` and ``load``: npz files of arrays and numbers, written atomically, read without pickle.

``atomic_output`` is the atomic write itself, for any file a program rewrites (csv, png).
"""
import math
import os
import tempfile
import zipfile
import zlib
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
    if the block raises, it is removed and ``path`` keeps its old content. An ``OSError`` (a full disk,
    a folder made read-only) is raised again naming ``path``, not the temporary file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    except OSError as error:
        raise _naming(error, path) from None
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "r+b") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except OSError as error:
        _remove_quietly(temporary)
        raise _naming(error, path) from None
    except BaseException:
        _remove_quietly(temporary)
        raise


def _naming(error, path):
    """The ``OSError`` ``error`` again, naming ``path`` (the file being written, not its temporary twin)."""
    return type(error)(error.errno, error.strerror or str(error), path)


def _remove_quietly(path):
    """Remove ``path`` if it exists; a failure (the folder made read-only meanwhile) leaves it for a later run."""
    try:
        os.remove(path)
    except OSError:
        pass


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


def memory_size():
    """The machine's physical memory in bytes (1 TiB where the platform does not say): ``load``'s default limit."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def _read_header(member, name, path):
    """(shape, dtype) from the .npy header at the start of an open zip member; nothing more is read."""
    try:
        version = numpy.lib.format.read_magic(member)
        read = {(1, 0): numpy.lib.format.read_array_header_1_0, (2, 0): numpy.lib.format.read_array_header_2_0}
        shape, _, dtype = read[version](member)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"minidl.load: {path}: entry '{name}' has no readable .npy header ({error})") from None
    return shape, dtype


def _check_declared_sizes(archive, names, path, max_bytes):
    """Read each entry's header and refuse, before any data is read, an entry of pickled objects, one that
    declares more bytes than its zip member holds, or entries declaring more than ``max_bytes`` in all."""
    total = 0
    for name in names:
        info = archive.getinfo(name + ".npy")
        with archive.open(info) as member:
            shape, dtype = _read_header(member, name, path)
        if dtype.hasobject:
            raise ValueError(f"minidl.load: {path} holds pickled objects (entry '{name}'), which minidl never loads")
        size = math.prod(shape) * dtype.itemsize
        if size > info.file_size:
            raise ValueError(f"minidl.load: {path}: entry '{name}' declares a {dtype} array of shape {shape} "
                             f"({size} bytes) but holds only {info.file_size} bytes: the file is damaged")
        total += size
        if total > max_bytes:
            raise ValueError(f"minidl.load: {path}: entry '{name}' ({dtype}, shape {shape}) takes the arrays "
                             f"to {total} bytes, over the limit of {max_bytes} bytes")


def load(path, select=None, max_bytes=None):
    """Read an npz written by ``save`` into a dict of name -> ``numpy.ndarray`` (never unpickles).

    ``select(name)``, when given, picks the entries to read; the others are not decompressed or read. Every
    selected entry's header is checked first (its dtype, and its declared size against what its zip member
    holds and, all selected entries together, against ``max_bytes``: by default the machine's memory), so a
    damaged or hostile file is a ``ValueError`` before any array is allocated.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"minidl.load: no such file: {path}")
    _check_archive(path)
    max_bytes = memory_size() if max_bytes is None else max_bytes
    try:
        with zipfile.ZipFile(path) as archive:
            names = [member[:-len(".npy")] for member in archive.namelist() if member.endswith(".npy")]
            names = [name for name in names if select is None or select(name)]
            _check_declared_sizes(archive, names, path, max_bytes)
            return {name: _read_entry(archive, name, path) for name in names}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"minidl.load: {path} is not a readable npz file ({error})") from None


def _read_entry(archive, name, path):
    """One array of an open npz archive, read without pickle."""
    with archive.open(name + ".npy") as member:
        try:
            return numpy.lib.format.read_array(member, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"minidl.load: {path}: entry '{name}' is not a readable array ({error})") from None
