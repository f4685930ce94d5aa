"""Optimizers with PyTorch's update rules, each a plain update function and a class that calls it."""
from .adam import Adam, adam_update
from .optimizer import Optimizer
from .sgd import SGD, sgd_update

__all__ = ["Optimizer", "SGD", "Adam", "sgd_update", "adam_update"]
