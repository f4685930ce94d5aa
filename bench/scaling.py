"""How SegNetSmall's training step grows with image size: 128x128, 256x256, 512x512, minidl and PyTorch.

    python -m bench.scaling           # N=2, 1 channel, the three sizes
    python -m bench.scaling --quick   # 32, 64, 128: a smoke test of the script

Step time should grow linearly with the pixel count: 128 -> 512 is 16x the pixels,
so ``x of first`` at 512 should be within 10% of 16. Same step as ``bench.models``
(forward, BCE+Dice, backward, SGD); all minidl timings first, then all PyTorch timings.
Within each side the three sizes are timed in rounds (an untimed step of each size, then as many
timed steps as make up the largest size's pixels: 16 of 128x128, 4 of 256x256, 1 of 512x512, their
mean), and ``x of first`` is the median of the rounds' own ratios, so each size is timed over about
the same span of every round and the machine's drift over seconds does not land on one size.
"""
import statistics

from bench.common import gflops, import_torch, interleaved_ms, median_ratio, script_main
from bench.models import minidl_step, step_conv_flop, torch_step

SIZES = [128, 256, 512]
QUICK_SIZES = [32, 64, 128]
BATCH = 2


def run(quick=False):
    """Rows: size, median step ms and conv GFLOP/s of each side, and each side's time relative to the smallest."""
    sizes = QUICK_SIZES if quick else SIZES
    shapes = [[BATCH, 1, size, size] for size in sizes]
    calls = [(sizes[-1] // size) ** 2 for size in sizes]
    ours = interleaved_ms([minidl_step("SegNetSmall", shape) for shape in shapes], quick=quick, calls=calls)
    torch = import_torch()
    nan_rounds = [[float("nan")] for _ in shapes]
    theirs = (interleaved_ms([torch_step("SegNetSmall", shape) for shape in shapes], quick=quick, calls=calls)
              if torch else nan_rounds)
    rows = []
    for size, shape, our_times, their_times in zip(sizes, shapes, ours, theirs):
        flop = step_conv_flop("SegNetSmall", shape)
        minidl_ms, torch_ms = statistics.median(our_times), statistics.median(their_times)
        rows.append({"input": f"{BATCH}x1x{size}x{size}", "pixels x": (size / sizes[0]) ** 2,
                     "minidl ms": minidl_ms, "minidl x of first": median_ratio(our_times, ours[0]),
                     "torch ms": torch_ms, "torch x of first": median_ratio(their_times, theirs[0]),
                     "minidl GFLOP/s": gflops(flop, minidl_ms), "torch GFLOP/s": gflops(flop, torch_ms),
                     "ratio": minidl_ms / torch_ms})
    return rows


def main(argv=None):
    script_main("scaling", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
