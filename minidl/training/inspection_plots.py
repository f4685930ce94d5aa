"""The pictures and table of ``--inspect``: gradient flow, activations, update ratios, saliency, layer_stats.csv.

``epochs`` is a list of (epoch number, layer table), a layer table being {layer: {statistic: value}} in
forward order (``minidl.inspect.layer_table``).
"""
import csv

import numpy
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..inspect import statistic_names
from ..serialization import atomic_output

UPDATE_RATIO_RULE_OF_THUMB = 1e-3


def write_layer_stats(epochs, layer_types, path):
    """``layer_stats.csv``: one row per (epoch, layer), a column per statistic (empty where a layer has none)."""
    names = []
    for _, table in epochs:
        names += [name for name in statistic_names(table) if name not in names]
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["epoch", "layer", "type"] + names)
        for epoch, table in epochs:
            for layer, row in table.items():
                values = [f"{row[name]:.6g}" if name in row else "" for name in names]
                writer.writerow([epoch, layer, layer_types.get(layer, "")] + values)


def read_layer_stats(path, last_epoch):
    """The (epoch, layer table) list of a ``layer_stats.csv`` up to ``last_epoch``; [] if there is none."""
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError:
        return []
    epochs = {}
    for row in rows:
        epoch = int(row.pop("epoch"))
        layer = row.pop("layer")
        row.pop("type")
        if epoch <= last_epoch:
            epochs.setdefault(epoch, {})[layer] = {name: float(value) for name, value in row.items() if value}
    return sorted(epochs.items())


def _series(epochs, statistic):
    """(layer names in forward order having ``statistic``, [(epoch, values)])."""
    layers = []
    for _, table in epochs:
        layers += [layer for layer, row in table.items() if statistic in row and layer not in layers]
    lines = [(epoch, [table.get(layer, {}).get(statistic, numpy.nan) for layer in layers]) for epoch, table in epochs]
    return layers, lines


def plot_per_layer(axes, epochs, statistic, title, ylabel, log=True, label="epoch {}"):
    """One line per epoch (dark to light) of ``statistic`` over the layers that have it, in forward order;
    ``label`` names a line from its epoch."""
    layers, lines = _series(epochs, statistic)
    colours = colormaps["viridis"](numpy.linspace(0.0, 0.9, max(len(lines), 1)))
    for (epoch, values), colour in zip(lines, colours):
        axes.plot(range(len(layers)), values, "o-", markersize=3, color=colour, label=label.format(epoch))
    if log:
        axes.set_yscale("log")
    axes.set_xticks(range(len(layers)))
    axes.set_xticklabels(layers, rotation=90, fontsize=7)
    axes.set(title=title, ylabel=ylabel)
    axes.grid(alpha=0.3)
    if lines:
        axes.legend(fontsize=7)


def _save(figure, path):
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary)


def plot_gradient_flow(epochs, path):
    """``gradient_flow.png``: ||grad_input|| of every layer (top) and ||dL/dweight|| (bottom), log scale."""
    figure = Figure(figsize=(12, 8), dpi=100)
    top, bottom = figure.subplots(2, 1)
    plot_per_layer(top, epochs, "grad_input_norm", "gradient leaving each layer, ||dL/d input||, mean per step",
                    "L2 norm")
    plot_per_layer(bottom, epochs, "weight_grad_norm", "weight gradients ||dL/dW||, mean per step", "L2 norm")
    _save(figure, path)


def plot_activations(epochs, path):
    """``activations.png``: each ReLU's fraction of exact zeros (top) and each layer's output std (bottom)."""
    figure = Figure(figsize=(12, 8), dpi=100)
    top, bottom = figure.subplots(2, 1)
    plot_per_layer(top, epochs, "zero_fraction", "dead or inactive units: share of zeros after each ReLU",
                    "zero fraction", log=False)
    top.set_ylim(0.0, 1.0)
    plot_per_layer(bottom, epochs, "activation_std", "activation spread: std of each layer's output", "std")
    _save(figure, path)


def plot_update_ratios(epochs, path):
    """``update_ratios.png``: ||step's change of W|| / ||W|| per layer, log scale, with the 1e-3 rule of thumb."""
    figure = Figure(figsize=(12, 5), dpi=100)
    axes = figure.subplots(1, 1)
    plot_per_layer(axes, epochs, "weight_update_ratio", "update-to-weight ratio ||delta W|| / ||W||, mean per step",
                    "ratio")
    axes.axhline(UPDATE_RATIO_RULE_OF_THUMB, color="red", linestyle="--", linewidth=1)
    _save(figure, path)


def plot_saliency(images, masks, gradients, path, title="d loss / d input"):
    """``saliency.png``: each (H, W) image in [0, 1] with its mask's outline (top) and |gradient| over it
    (bottom, each image scaled to its own largest value)."""
    count = len(images)
    figure = Figure(figsize=(3 * count, 6.4), dpi=100)
    axes = numpy.array(figure.subplots(2, count)).reshape(2, count)
    for index in range(count):
        magnitude = numpy.abs(gradients[index])
        axes[0, index].imshow(images[index], cmap="gray", vmin=0.0, vmax=1.0)
        if masks[index].any():
            axes[0, index].contour(masks[index], levels=[0.5], colors="lime", linewidths=1.0)
        axes[1, index].imshow(images[index], cmap="gray", vmin=0.0, vmax=1.0)
        axes[1, index].imshow(magnitude / max(float(magnitude.max()), 1e-30), cmap="inferno", alpha=0.7,
                              vmin=0.0, vmax=1.0)
        for row in axes[:, index]:
            row.set_axis_off()
    figure.suptitle(f"{title}: where the loss's gradient lands on the image (bright = large |gradient|)")
    _save(figure, path)
