"""Layers and containers, named and shaped as in ``torch.nn``."""
from .activation import ReLU, Sigmoid
from .batchnorm import BatchNorm2d
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .module import Module
from .pooling import MaxPool2d, MaxUnpool2d
from .upsample import Upsample

__all__ = ["Module", "Sequential", "Conv2d", "ConvTranspose2d", "ReLU", "Sigmoid", "MaxPool2d", "MaxUnpool2d",
           "BatchNorm2d", "Upsample"]
