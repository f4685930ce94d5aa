"""Lung-segmentation data: layout detection and pairing, image reading and caching, a synthetic set,
a seeded split, augmentation, and connected components for cleaning masks."""
from .augment import apply_augmentation, draw_augmentation
from .dataset import default_cache_dir, load_pair, load_pairs
from .errors import DataError
from .images import read_file_bytes, read_image, read_mask, resize_image, resize_mask, warn_rescaled
from .layouts import DatasetReport, Pair, find_pairs
from .split import split_indices
from .synthetic import make_chest_xray, synthetic_dataset
from .writers import LAYOUTS, write_layout

__all__ = ["DataError", "DatasetReport", "Pair", "find_pairs", "read_file_bytes", "read_image", "read_mask", "resize_image",
           "resize_mask", "warn_rescaled", "load_pair", "load_pairs", "default_cache_dir", "synthetic_dataset",
           "make_chest_xray", "write_layout", "LAYOUTS", "split_indices", "draw_augmentation", "apply_augmentation"]
