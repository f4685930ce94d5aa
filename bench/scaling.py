"""How SegNetSmall's training step grows with image size: 128x128, 256x256, 512x512, minidl and PyTorch.

    python -m bench.scaling           # N=2, 1 channel, the three sizes
    python -m bench.scaling --quick   # 32, 64, 128: a smoke test of the script

Step time should grow linearly with the pixel count: 128 -> 512 is 16x the pixels,
so ``x of first`` at 512 should be within 10% of 16. Same step as ``bench.models``
(forward, BCE+Dice, backward, SGD); all minidl timings first, then all PyTorch timings.
"""

from bench.common import gflops, import_torch, median_ms, script_main
from bench.models import minidl_step, step_conv_flop, torch_step

SIZES = [128, 256, 512]
QUICK_SIZES = [32, 64, 128]
BATCH = 2


def run(quick=False):
    """Rows: size, median step ms and conv GFLOP/s of each side, and each side's time relative to the smallest."""
    sizes = QUICK_SIZES if quick else SIZES
    shapes = [[BATCH, 1, size, size] for size in sizes]
    ours = [median_ms(minidl_step("SegNetSmall", shape), warmup=1, repeats=5, quick=quick) for shape in shapes]
    torch = import_torch()
    theirs = [median_ms(torch_step("SegNetSmall", shape), warmup=1, repeats=5, quick=quick) if torch
              else float("nan") for shape in shapes]
    rows = []
    for size, shape, minidl_ms, torch_ms in zip(sizes, shapes, ours, theirs):
        flop = step_conv_flop("SegNetSmall", shape)
        rows.append({"input": f"{BATCH}x1x{size}x{size}", "pixels x": (size / sizes[0]) ** 2,
                     "minidl ms": minidl_ms, "minidl x of first": minidl_ms / ours[0],
                     "torch ms": torch_ms, "torch x of first": torch_ms / theirs[0],
                     "minidl GFLOP/s": gflops(flop, minidl_ms), "torch GFLOP/s": gflops(flop, torch_ms),
                     "ratio": minidl_ms / torch_ms})
    return rows


def main(argv=None):
    script_main("scaling", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
