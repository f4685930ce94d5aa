"""Draw the figures of docs/ (matplotlib, Agg): python tools/make_figures.py [--out docs/figures].

Each figure is computed here from the formulas its page derives, so the
pictures can be rebuilt and checked: im2col.png, bilinear_weights.png,
max_pool_routing.png, bce_stable.png.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minidl.serialization import atomic_output  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"
DPI = 80
WINDOW_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3")


def _grid(ax, values, title, colours=None, text=None):
    """Draw a matrix as labelled cells; ``colours`` maps (row, col) -> face colour."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            face = (colours or {}).get((r, c), "white")
            ax.add_patch(plt.Rectangle((c, rows - 1 - r), 1, 1, facecolor=face, edgecolor="black", alpha=0.8))
            label = text[r][c] if text is not None else f"{values[r, c]:g}"
            ax.text(c + 0.5, rows - 0.5 - r, label, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, cols)
    ax.set_ylim(0, rows)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9)


def _save(fig, path):
    """Write ``fig`` to ``path`` atomically (a temporary file renamed over it) and close it."""
    with atomic_output(path) as temporary:
        fig.savefig(temporary, dpi=DPI)
    plt.close(fig)


def im2col_figure(path):
    """A 4x4 input, a 3x3 kernel at stride 1: four windows become the four columns of a 9x4 matrix."""
    x = numpy.arange(1, 17).reshape(4, 4)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), gridspec_kw={"width_ratios": [4, 4]})
    cols = numpy.empty((9, 4), dtype=int)
    col_colours = {}
    for window, (ho, wo) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        cols[:, window] = x[ho:ho + 3, wo:wo + 3].reshape(-1)
        for row in range(9):
            col_colours[(row, window)] = WINDOW_COLOURS[window]
    # the input: colour each pixel by the first window (scan order) that reads it
    input_colours = {}
    for window, (ho, wo) in reversed(list(enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]))):
        for i in range(3):
            for j in range(3):
                input_colours[(ho + i, wo + j)] = WINDOW_COLOURS[window]
    _grid(axes[0], x, "input x (1, 1, 4, 4); window (ho, wo) in colour\n(overlapping pixels shown in the first)",
          input_colours)
    _grid(axes[1], cols, "cols (C*kh*kw = 9, Ho*Wo = 4)\ncolumn p = window p, row (c, i, j)", col_colours)
    fig.text(0.5, 0.02, "y (O, 4) = W (O, 9) @ cols (9, 4);   col2im adds each column back onto its window",
             ha="center", fontsize=9)
    _save(fig, path)


def bilinear_matrix(in_size, out_size, align_corners):
    """(out_size, in_size) matrix A with y = A x for 1-D linear interpolation, PyTorch's source coordinates."""
    out_index = numpy.arange(out_size, dtype=numpy.float64)
    if align_corners:
        source = out_index * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        source = numpy.maximum((out_index + 0.5) * (in_size / out_size) - 0.5, 0.0)
    low = numpy.minimum(numpy.floor(source).astype(int), in_size - 1)
    high = numpy.minimum(low + 1, in_size - 1)
    frac = source - low
    rows = numpy.arange(out_size)
    matrix = numpy.zeros((out_size, in_size))
    matrix[rows, low] += 1 - frac
    matrix[rows, high] += frac
    return matrix


def bilinear_figure(path):
    """The 1-D interpolation matrices A (8 x 4) for a x2 resize; bilinear is A_h X A_w^T, backward A_h^T dY A_w."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
    for ax, align_corners in zip(axes, (False, True)):
        matrix = bilinear_matrix(4, 8, align_corners)
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        for (r, c), weight in numpy.ndenumerate(matrix):
            if weight:
                ax.text(c, r, f"{weight:.3g}", ha="center", va="center", fontsize=7)
        ax.set_title(f"A (8 x 4), align_corners={align_corners}", fontsize=9)
        ax.set_xlabel("input index")
        ax.set_ylabel("output index")
    fig.text(0.5, 0.02, "forward Y = A_h X A_w^T;  backward dX = A_h^T dY A_w", ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


def max_pool_routing_figure(path):
    """MaxPool2d(2) with indices on a 4x4 plane, and MaxUnpool2d scattering back through the same indices."""
    rng = numpy.random.default_rng(3)
    x = rng.permutation(16).reshape(4, 4) + 1
    pooled = numpy.empty((2, 2), dtype=int)
    indices = numpy.empty((2, 2), dtype=int)
    winners = {}
    for ho in range(2):
        for wo in range(2):
            window = x[2 * ho:2 * ho + 2, 2 * wo:2 * wo + 2]
            i, j = numpy.unravel_index(numpy.argmax(window), window.shape)
            pooled[ho, wo] = window[i, j]
            indices[ho, wo] = (2 * ho + i) * 4 + (2 * wo + j)
            winners[(2 * ho + i, 2 * wo + j)] = WINDOW_COLOURS[2 * ho + wo]
    unpooled = numpy.zeros((4, 4), dtype=int)
    unpooled.reshape(-1)[indices.reshape(-1)] = pooled.reshape(-1)
    out_colours = {(r, c): WINDOW_COLOURS[2 * r + c] for r in range(2) for c in range(2)}
    fig, axes = plt.subplots(1, 3, figsize=(8, 3))
    _grid(axes[0], x, "x (4 x 4): window maxima", winners)
    _grid(axes[1], pooled, "y = max-pool(x), index h*W+w", out_colours,
          text=[[f"{pooled[r, c]} @ {indices[r, c]}" for c in range(2)] for r in range(2)])
    _grid(axes[2], unpooled, "unpool(y, index): zeros elsewhere", winners)
    fig.text(0.5, 0.03, "pool backward: dx[index] = dy (others 0);  unpool backward: dy_small = dy_big[index]",
             ha="center", fontsize=9)
    _save(fig, path)


def bce_stable_figure(path):
    """BCE of target 1 in float32: the naive -log(sigmoid(z)) against the stable max(z,0) - z*t + log1p(exp(-|z|))."""
    z = numpy.linspace(-120, 120, 481, dtype=numpy.float32)
    with numpy.errstate(over="ignore", divide="ignore"):
        naive = -numpy.log(numpy.float32(1) / (numpy.float32(1) + numpy.exp(-z)))
        naive_zero_target = -numpy.log(numpy.float32(1) - numpy.float32(1) / (numpy.float32(1) + numpy.exp(-z)))
    stable = numpy.maximum(z, 0) - z + numpy.log1p(numpy.exp(-numpy.abs(z)))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(z, stable, label="stable, t = 1", linewidth=3, color="#4daf4a")
    ax.plot(z, numpy.where(numpy.isfinite(naive), naive, numpy.nan), "--", label="naive, t = 1", color="#e41a1c")
    ax.plot(z, numpy.where(numpy.isfinite(naive_zero_target), naive_zero_target, numpy.nan), ":",
            label="naive, t = 0 (inf beyond ~17)", color="#377eb8")
    ax.set_xlabel("logit z (float32)")
    ax.set_ylabel("loss")
    ax.set_ylim(-5, 130)
    ax.legend(fontsize=8)
    ax.set_title("BCE with logits: naive form overflows, stable form is exact", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


FIGURES = {
    "im2col.png": im2col_figure,
    "bilinear_weights.png": bilinear_figure,
    "max_pool_routing.png": max_pool_routing_figure,
    "bce_stable.png": bce_stable_figure,
}


def make_figures(out=DEFAULT_OUT):
    """Write every figure into ``out``; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in FIGURES.items():
        draw(out / name)
        paths.append(out / name)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: docs/figures)")
    for path in make_figures(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
