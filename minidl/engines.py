"""The engine switch: which implementation of each op the layers run.

``reference`` runs the plain forward/backward pairs of ``minidl/functional/``, the ones the docs derive.
``fast`` runs ``minidl/fast/`` where it has the op (same signatures, same results; tested against the
reference) and the reference elsewhere. The environment variable MINIDL_ENGINE sets the engine at import;
the default is ``fast``. A layer records the engine of its forward in its cache, and its backward runs on it.
A student copy (``tools/make_assignment.py``) has no ``minidl/fast/``: there ``ENGINES`` is ("reference",),
the default is ``reference``, and asking for ``fast`` is a ValueError that says so.
"""
import contextlib
import importlib
import os

# this package's own folder decides: an import search could find another installed minidl's fast/
HAS_FAST_ENGINE = os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast"))
ENGINES = ("reference", "fast") if HAS_FAST_ENGINE else ("reference",)
FAST_FAMILIES = ("batchnorm", "conv", "pooling", "upsample")
DEFAULT_ENGINE = "fast" if HAS_FAST_ENGINE else "reference"
ONLY_REFERENCE = "this copy of minidl has only the reference engine"


def _checked(name):
    if name not in ENGINES:
        if name == "fast":
            raise ValueError(f"engine 'fast': {ONLY_REFERENCE}")
        raise ValueError(f"unknown engine {name!r}: choose one of {ENGINES}")
    return name


# MINIDL_ENGINE is read at import; a bad value is reported (ValueError) when an engine is first needed, so
# that a program can catch it and say so in one line instead of failing inside ``import minidl``
_current = [None]
_from_environment = os.environ.get("MINIDL_ENGINE") or DEFAULT_ENGINE


def set_engine(name):
    """Run every op from now on on engine ``name`` ("reference" or "fast")."""
    _current[0] = _checked(name)


def get_engine():
    """The name of the engine ops run on now."""
    if _current[0] is None:
        if _from_environment == "fast" and not HAS_FAST_ENGINE:
            raise ValueError(f"MINIDL_ENGINE='fast': {ONLY_REFERENCE}")
        if _from_environment not in ENGINES:
            raise ValueError(f"MINIDL_ENGINE={_from_environment!r} is not an engine: choose one of {ENGINES}")
        _current[0] = _from_environment
    return _current[0]


@contextlib.contextmanager
def engine(name):
    """``with engine("reference"):`` runs the block on that engine, then restores the one before."""
    previous = get_engine()
    set_engine(name)
    try:
        yield
    finally:
        set_engine(previous)


def op(family, name, engine_name=None):
    """The function ``name`` of op family ``family`` ("conv", "pooling", ...) on ``engine_name`` (default: now)."""
    engine_name = _checked(engine_name or get_engine())
    package = "fast" if engine_name == "fast" and family in FAST_FAMILIES else "functional"
    return getattr(importlib.import_module(f"minidl.{package}.{family}"), name)
