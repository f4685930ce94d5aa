"""One training step (forward, BCE+Dice, backward, SGD update) of SegNetSmall and FCN: minidl against PyTorch.

    python -m bench.models           # SegNetSmall N=8 1x128x192 and FCN(num_classes=1) N=2 3x224x224
    python -m bench.models --quick   # tiny sizes: a smoke test of the script
    python -m bench.models --engine reference   # the plain ops the docs derive, against the same PyTorch

float32 on the CPU, the same loss (BCE-with-logits mean + soft Dice, smooth 1) and SGD (lr 0.01) on both
sides; the PyTorch networks are the tests' equivalents (``tests/torch_models.py``). The two sides are
timed in alternating rounds (``bench/common.py::interleaved_ms``): a round is one untimed and two timed
steps of minidl, then the same of PyTorch, so the machine's drift over a minute falls on both sides and
the untimed step lets the other library's threads settle. ``minidl ms`` and ``torch ms`` are the medians
of the rounds' means, ``ratio`` the median of the rounds' own ratios (lower is better). ``GFLOP``
counts the work a step's convolutions need (forward, input and weight gradients, as direct convolution:
2 x multiply-adds, also for the layers Winograd runs with fewer; not the first layer's input gradient,
which minidl's ``model.backward`` also returns), so GFLOP/s is the rate both sides sustain on the step's
main work. Memory: one step in a fresh process per side, its
peak RSS and how far the step raised it above the resident size before it.
"""

import statistics

import numpy

from bench.common import gflops, import_torch, interleaved_ms, median_ms, median_ratio, peak_rss_mib, script_main

CASES = [("SegNetSmall", [8, 1, 128, 192]), ("FCN", [2, 3, 224, 224])]
QUICK_CASES = [("SegNetSmall", [2, 1, 32, 32]), ("FCN", [1, 3, 32, 32])]
LEARNING_RATE = 0.01
ROUNDS = {"SegNetSmall": 5, "FCN": 3}


def _batch(shape):
    """A random float32 image batch and a binary (N, 1, H, W) mask."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=numpy.float32)
    target = (rng.random((shape[0], 1) + tuple(shape[2:])) > 0.5).astype(numpy.float32)
    return x, target


def build_model(model_name):
    """The minidl network benchmarked as ``model_name``."""
    import models
    return models.SegNetSmall() if model_name == "SegNetSmall" else models.FCN(in_channels=3, num_classes=1)


def step_conv_flop(model_name, shape):
    """FLOP of one training step's convolutions on a batch of ``shape``: 3x the forward's, less the first
    layer's input gradient. A conv's forward is 2 * N * (weight size) * (output pixels), a transposed
    conv's 2 * N * (weight size) * (input pixels)."""
    import minidl
    from minidl.nn import Conv2d, ConvTranspose2d
    forward_flop = []

    def count(module, inputs, output):
        if isinstance(module, (Conv2d, ConvTranspose2d)):
            grid = output.shape[2:] if isinstance(module, Conv2d) else inputs[0].shape[2:]
            forward_flop.append(2 * output.shape[0] * module.weight.size * grid[0] * grid[1])

    model = build_model(model_name)
    handles = [module.register_forward_hook(count) for module in model.modules()]
    try:
        with minidl.no_grad():
            model(numpy.zeros(shape, dtype=numpy.float32))
    finally:
        for handle in handles:
            handle.remove()
    return 3 * sum(forward_flop) - forward_flop[0]


def minidl_step(model_name, shape, model=None, device="cpu"):
    """A callable running one minidl training step of ``model_name`` (or of ``model``, built as that name) on a
    batch of ``shape``, on ``device``."""
    import minidl
    model = (build_model(model_name) if model is None else model).to(device)
    loss = minidl.losses.BCEDiceLoss()
    optimizer = minidl.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, target = (minidl.backend.to_device(array, device) for array in _batch(shape))

    def step():
        optimizer.zero_grad()
        loss(model(x), target)
        model.backward(loss.backward())
        optimizer.step()
    return step


def torch_step(model_name, shape):
    """A callable running one PyTorch training step of the equivalent network, same loss and optimizer."""
    torch = import_torch()
    from models.torch_equivalents import torch_models
    classes = torch_models(torch)
    if model_name == "SegNetSmall":
        model = classes.SegNetSmall(1, 1, 16, "bilinear")
    else:
        model = classes.FCN(3, 1, (64, 128, 256, 512, 512))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, target = (torch.from_numpy(array) for array in _batch(shape))

    def bce_dice(logits):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        intersection = (p * target).sum(dim=(2, 3))
        total = p.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
        return bce + (1 - (2 * intersection + 1) / (total + 1)).mean()

    def step():
        optimizer.zero_grad()
        bce_dice(model(x)).backward()
        optimizer.step()
    return step


def step_times(name, shape, torch, quick=False):
    """(minidl ms, torch ms, ratio) of one case: interleaved rounds, or minidl alone (NaN) without PyTorch."""
    ours = minidl_step(name, shape)
    if not torch:
        return median_ms(ours, warmup=1, repeats=2 * ROUNDS[name], quick=quick), float("nan"), float("nan")
    mine, theirs = interleaved_ms([ours, torch_step(name, shape)], rounds=ROUNDS[name], calls=[2, 2], quick=quick)
    return statistics.median(mine), statistics.median(theirs), median_ratio(mine, theirs)


def run(quick=False):
    """Rows: model, input, the step's conv GFLOP, median step ms and GFLOP/s on each side, their ratio, and
    each side's peak / step MiB."""
    torch = import_torch()
    rows = []
    for name, shape in QUICK_CASES if quick else CASES:
        minidl_ms, torch_ms, ratio = step_times(name, shape, torch, quick)
        minidl_peak, minidl_step_mib = peak_rss_mib("bench.models:minidl_step", name, shape)
        torch_peak, torch_step_mib = (peak_rss_mib("bench.models:torch_step", name, shape) if torch
                                      else (float("nan"), float("nan")))
        flop = step_conv_flop(name, shape)
        rows.append({"model": name, "input": "x".join(map(str, shape)), "GFLOP": flop / 1e9, "minidl ms": minidl_ms,
                     "torch ms": torch_ms, "minidl GFLOP/s": gflops(flop, minidl_ms),
                     "torch GFLOP/s": gflops(flop, torch_ms), "ratio": ratio,
                     "minidl peak MiB": minidl_peak, "torch peak MiB": torch_peak,
                     "minidl step MiB": minidl_step_mib, "torch step MiB": torch_step_mib})
    return rows


def main(argv=None):
    script_main("models", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
