"""Layers and containers, named and shaped as in ``torch.nn``."""
from .activation import ReLU, Sigmoid
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .module import Module

__all__ = ["Module", "Sequential", "Conv2d", "ConvTranspose2d", "ReLU", "Sigmoid"]
