"""Connected components and hole filling of 2-D bool masks, in NumPy array operations.

Labelling propagates the smallest pixel index through each component
(neighbour minimum, then pointer jumping: a pixel takes its label's label),
repeated until nothing changes, so it needs no per-pixel Python loop.
Foreground is 8-connected and background 4-connected, the pairing under
which a hole is exactly a background region that does not reach the border.
"""
import numpy

NEIGHBOURS_4 = ((0, 1), (1, 0), (0, -1), (-1, 0))
NEIGHBOURS_8 = NEIGHBOURS_4 + ((1, 1), (1, -1), (-1, 1), (-1, -1))


def _shifted(labels, row_step, col_step, fill):
    """``labels`` moved so each pixel sees its neighbour at (row + row_step, col + col_step); ``fill`` outside."""
    padded = numpy.pad(labels, 1, constant_values=fill)
    height, width = labels.shape
    return padded[1 + row_step:1 + row_step + height, 1 + col_step:1 + col_step + width]


def label_components(mask, connectivity=8):
    """(H, W) int64 labels of ``mask``'s connected components: each component's smallest flat pixel index,
    -1 on background. ``connectivity`` 8 (diagonal neighbours join) or 4."""
    if connectivity not in (4, 8):
        raise ValueError(f"label_components: connectivity must be 4 or 8, got {connectivity}")
    mask = numpy.asarray(mask, bool)
    outside = mask.size
    labels = numpy.where(mask, numpy.arange(mask.size).reshape(mask.shape), outside)
    neighbours = NEIGHBOURS_8 if connectivity == 8 else NEIGHBOURS_4
    while True:
        smallest = labels
        for row_step, col_step in neighbours:
            smallest = numpy.minimum(smallest, _shifted(labels, row_step, col_step, outside))
        smallest = numpy.where(mask, smallest, outside)
        flat = numpy.append(smallest.reshape(-1), outside)
        jumped = numpy.where(mask, flat[smallest], outside)
        if numpy.array_equal(jumped, labels):
            return numpy.where(mask, labels, -1)
        labels = jumped


def keep_largest(mask, count=2):
    """``mask`` with only its ``count`` largest 8-connected components (ties: the one met first in row order)."""
    labels = label_components(mask, 8)
    names, sizes = numpy.unique(labels[labels >= 0], return_counts=True)
    kept = names[numpy.argsort(-sizes, kind="stable")[:count]]
    return numpy.isin(labels, kept)


def fill_holes(mask):
    """``mask`` with every background region that does not reach the image border filled."""
    mask = numpy.asarray(mask, bool)
    background = label_components(~mask, 4)
    border = numpy.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    return mask | ~numpy.isin(background, border)


def postprocess_mask(mask):
    """A lung mask cleaned as ``predict`` does: the two largest components (the lungs), holes filled."""
    return fill_holes(keep_largest(mask, 2))
