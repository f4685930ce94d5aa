"""A seeded train / validation / test split of ``count`` examples."""
import numpy

from .errors import DataError


def split_indices(count, val_fraction=0.2, test_fraction=0.0, seed=0):
    """Shuffle ``range(count)`` with ``seed`` and cut it: (train, val, test) sorted int64 index arrays.

    Validation gets ``round(count * val_fraction)`` examples (at least one), test
    ``round(count * test_fraction)``; training must keep at least one.
    """
    if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
        raise DataError(f"split: val_fraction must be in (0, 1) and test_fraction in [0, 1), "
                        f"got {val_fraction} and {test_fraction}")
    val_count = max(1, int(round(count * val_fraction)))
    test_count = int(round(count * test_fraction))
    if count - val_count - test_count < 1:
        raise DataError(f"split: {count} examples are too few for a validation fraction of {val_fraction} "
                        f"and a test fraction of {test_fraction} (training would be empty)")
    order = numpy.random.default_rng(seed).permutation(count)
    val, test, train = numpy.split(order, [val_count, val_count + test_count])
    return numpy.sort(train), numpy.sort(val), numpy.sort(test)
