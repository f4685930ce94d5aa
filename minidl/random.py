"""The random generator behind parameter initialisation, seeded with ``manual_seed``."""
import numpy

_generator = numpy.random.default_rng(0)


def manual_seed(seed):
    """Seed the generator used to initialise parameters, so models are reproducible."""
    global _generator
    _generator = numpy.random.default_rng(seed)


def generator():
    """The current ``numpy.random.Generator``."""
    return _generator
