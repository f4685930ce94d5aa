"""Vanishing gradients, seen: a deep plain conv stack against the same stack with batch norm.

    python tools/deep_stack.py [--depth 16] [--steps 30] [--out docs/figures/deep_stack_gradient_flow.png]

Each stack is ``depth`` blocks of 3x3 conv (8 channels) -> [BatchNorm2d] -> ReLU, then a 1x1 conv to one
logit per pixel, trained with Adam (lr 1e-3, BCE with logits) on 64x64 synthetic chest X-rays, batch 8,
for ``steps`` steps with an ``Inspector`` attached. The picture shows ||dL/d input|| of every layer, mean
over each third of the steps (one line each), for both stacks on the same log scale.
"""
import argparse
import sys
from pathlib import Path

import numpy
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import minidl  # noqa: E402 (after the path is set)
from minidl import losses, optim  # noqa: E402
from minidl.data.synthetic import synthetic_dataset  # noqa: E402
from minidl.inspect import Inspector, layer_table, mean_over_steps  # noqa: E402
from minidl.nn import BatchNorm2d, Conv2d, ReLU, Sequential  # noqa: E402
from minidl.serialization import atomic_output  # noqa: E402
from minidl.training.inspection_plots import plot_per_layer  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "deep_stack_gradient_flow.png"
WIDTH, BATCH, SIZE = 8, 8, 64


def deep_stack(depth, batch_norm):
    """depth x (conv 3x3 -> [BN] -> ReLU), then a 1x1 conv: (N, 1, H, W) -> (N, 1, H, W)."""
    layers = []
    for index in range(depth):
        layers.append(Conv2d(1 if index == 0 else WIDTH, WIDTH, 3, padding=1))
        if batch_norm:
            layers.append(BatchNorm2d(WIDTH))
        layers.append(ReLU())
    return Sequential(*layers, Conv2d(WIDTH, 1, 1))


def watch(model, images, masks, steps):
    """Train ``model`` for ``steps`` steps; returns [(label, layer table)], one per third of the steps."""
    inspector = Inspector(model)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loss = losses.BCEWithLogitsLoss()
    rng = numpy.random.default_rng(0)
    records = []
    for _ in range(steps):
        chosen = rng.choice(len(images), BATCH, replace=False)
        optimizer.zero_grad()
        loss(model(images[chosen]), masks[chosen])
        model.backward(loss.backward())
        optimizer.step()
        records.append(inspector.end_step())
    inspector.close()
    thirds = numpy.array_split(numpy.arange(steps), 3)
    return [(f"{part[0] + 1}-{part[-1] + 1}", layer_table(mean_over_steps([records[k] for k in part]),
                                                             inspector.forward_order)) for part in thirds]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    options = parser.parse_args(argv)
    images, masks = synthetic_dataset(64, SIZE, seed=0)
    images, masks = images[:, None], masks[:, None].astype(numpy.float32)
    figure = Figure(figsize=(12, 8), dpi=90)
    panels = figure.subplots(2, 1, sharey=True)
    for axes, batch_norm in zip(panels, (False, True)):
        minidl.manual_seed(0)
        stages = watch(deep_stack(options.depth, batch_norm), images, masks, options.steps)
        name = "with batch norm" if batch_norm else "plain"
        plot_per_layer(axes, stages, "grad_input_norm", f"{options.depth} conv layers, {name}: ||dL/d input|| of "
                       "each layer, mean over the steps", "L2 norm", label="steps {}")
    figure.tight_layout()
    with atomic_output(options.out) as temporary:
        figure.savefig(temporary)
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
