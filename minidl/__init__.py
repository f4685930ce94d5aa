"""minidl: a from-scratch deep-learning layer library on NumPy and CuPy, backward passes written by hand."""
from . import backend, functional, init, nn
from . import losses, metrics, optim
from .engines import engine, get_engine, set_engine
from .grad_mode import is_grad_enabled, no_grad
from .parameter import Parameter
from .random import manual_seed
from .serialization import load, save
from .summary import summary

__version__ = "0.1.0"

__all__ = ["Parameter", "set_engine", "get_engine", "engine", "no_grad", "is_grad_enabled", "manual_seed", "save",
           "load", "backend", "functional", "init", "nn", "losses", "metrics", "optim", "summary"]
