"""Conv2d (3x3, padding 1, float32) forward and forward+backward: minidl against PyTorch on this machine.

    python -m bench.conv            # the issue's four shapes (run on a quiet machine)
    python -m bench.conv --quick    # tiny shapes: a smoke test of the script

FLOPs: 2*N*Cout*Hout*Wout*Cin*9 per forward, three times that for
forward+backward (input gradient and weight gradient each cost a forward).
All minidl timings are taken first, then all PyTorch timings. ``ratio`` is
minidl's time over PyTorch's (lower is better; the target is <= 1.5 for
forward+backward). Memory: one forward+backward in a fresh process, its peak RSS and how far
the step raised it above the resident size before it (its working memory).
"""

import numpy

from bench.common import gflops, import_torch, median_ms, peak_rss_mib, script_main

# (N, C_in, C_out, H, W)
SHAPES = [(8, 16, 32, 128, 192), (8, 64, 64, 64, 96), (2, 3, 64, 224, 224), (2, 512, 512, 14, 14)]
QUICK_SHAPES = [(2, 4, 8, 16, 24), (1, 16, 16, 8, 8)]


def forward_flop(shape):
    n, c_in, c_out, h, w = shape
    return 2 * n * c_out * h * w * c_in * 9


def _inputs(shape):
    n, c_in, c_out, h, w = shape
    rng = numpy.random.default_rng(0)
    return (rng.standard_normal((n, c_in, h, w), dtype=numpy.float32),
            rng.standard_normal((n, c_out, h, w), dtype=numpy.float32))


def minidl_steps(shape):
    """(forward, forward_backward) callables for minidl at ``shape``."""
    import minidl
    layer = minidl.nn.Conv2d(shape[1], shape[2], 3, padding=1)
    x, dy = _inputs(shape)

    def forward():
        with minidl.no_grad():
            layer(x)

    def forward_backward():
        layer(x)
        layer.backward(dy)
    return forward, forward_backward


def torch_steps(torch, shape):
    """(forward, forward_backward) callables for PyTorch at ``shape``; the input gradient is computed too."""
    layer = torch.nn.Conv2d(shape[1], shape[2], 3, padding=1)
    x, dy = (torch.from_numpy(array) for array in _inputs(shape))
    x_leaf = x.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            layer(x)

    def forward_backward():
        layer(x_leaf).backward(dy)
    return forward, forward_backward


def forward_backward_step(library, *shape):
    """The forward+backward callable of ``library`` ("minidl" or "torch"), for the memory subprocess."""
    steps = minidl_steps(shape) if library == "minidl" else torch_steps(import_torch(), shape)
    return steps[1]


def run(quick=False):
    """Time every shape; returns one row per (shape, pass)."""
    shapes = QUICK_SHAPES if quick else SHAPES
    minidl_times = {shape: [median_ms(step, quick=quick) for step in minidl_steps(shape)] for shape in shapes}
    torch = import_torch()
    torch_times = {shape: ([median_ms(step, quick=quick) for step in torch_steps(torch, shape)]
                           if torch else [float("nan")] * 2) for shape in shapes}
    rows = []
    for shape in shapes:
        n, c_in, c_out, h, w = shape
        memory = ["%.0f / %.0f" % peak_rss_mib("bench.conv:forward_backward_step", library, *shape)
                  if library == "minidl" or torch else "-" for library in ("minidl", "torch")]
        for index, (name, flop) in enumerate([("fwd", forward_flop(shape)), ("fwd+bwd", 3 * forward_flop(shape))]):
            ours, theirs = minidl_times[shape][index], torch_times[shape][index]
            rows.append({
                "shape": f"({n},{c_in}->{c_out},{h}x{w})", "pass": name,
                "minidl ms": ours, "torch ms": theirs,
                "minidl GFLOP/s": gflops(flop, ours), "torch GFLOP/s": gflops(flop, theirs),
                "ratio": ours / theirs,
                "minidl peak / step MiB": memory[0] if name == "fwd+bwd" else "",
                "torch peak / step MiB": memory[1] if name == "fwd+bwd" else "",
            })
    return rows


def main(argv=None):
    script_main("conv", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
