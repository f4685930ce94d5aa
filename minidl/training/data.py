"""The images a run trains and validates on: the synthetic set, or a dataset folder, split with the seed."""
import hashlib
import os

import numpy

from ..data import DataError, find_pairs, load_pairs, split_indices, synthetic_dataset
from .errors import ConfigError


def load_examples(config, cache_dir=None, log=print, progress=True):
    """All examples of the run at ``config.size``: images (N, 1, S, S) float32 in [0, 1], masks (N, 1, S, S) float32.

    ``config.data`` None means ``config.synthetic_count`` synthetic radiographs from ``config.seed``;
    otherwise the folder's layout is detected and its report printed through ``log``.
    """
    size = (config.size, config.size)
    if config.data is None:
        images, masks = synthetic_dataset(config.synthetic_count, config.size, config.seed)
        log(f"dataset: {config.synthetic_count} synthetic chest X-rays at {config.size}x{config.size} "
            f"(seed {config.seed})")
    else:
        report = find_pairs(config.data)
        for line in report.lines():
            log(line)
        images, masks = load_pairs(report.pairs, size, config.data, cache_dir, progress=progress)
    return images[:, None], masks[:, None].astype(numpy.float32)


def split_examples(config, images, masks):
    """{"train": (images, masks), "val": ..., "test": ...} from a split seeded with ``config.seed``."""
    train, val, test = split_indices(len(images), config.val_fraction, config.test_fraction, config.seed)
    return {name: (images[index], masks[index]) for name, index in (("train", train), ("val", val), ("test", test))}


def check_split(config, pairs=None):
    """Raise ``ConfigError`` when the validation and test fractions leave no training example.

    Needs only the example count: ``--synthetic-count``, or the dataset folder's ``pairs`` from its file
    listing (nothing is decoded), so it runs before the dataset is loaded.
    """
    count = config.synthetic_count if config.data is None else len(pairs)
    try:
        split_indices(count, config.val_fraction, config.test_fraction, config.seed)
    except DataError:
        source = "synthetic images" if config.data is None else f"pairs in --data {config.data}"
        raise ConfigError(f"--val-fraction {config.val_fraction} and --test-fraction {config.test_fraction} leave "
                          f"no training image of the {count} {source}") from None


def dataset_fingerprint(config, pairs):
    """The dataset folder a run trains on, in one line: the count of its ``pairs`` (from ``find_pairs``) and a
    digest of their images' paths relative to the folder (so a moved folder matches and one with other images
    does not); None for the synthetic set, which its settings fully describe."""
    if config.data is None:
        return None
    names = sorted(os.path.relpath(pair.image, config.data) for pair in pairs)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"{len(names)} pairs, image paths sha256 {digest}"
