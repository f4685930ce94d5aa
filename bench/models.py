"""One training step (forward, BCE+Dice, backward, SGD update) of SegNetSmall and FCN: minidl vs PyTorch.

    python bench/models.py           # SegNetSmall N=8 1x128x192 and FCN(num_classes=1) N=2 3x224x224
    python bench/models.py --quick   # tiny sizes, only to check that the script runs

Every (model, framework) pair runs in its own subprocess, so the peak resident memory reported
(``resource.getrusage`` maxrss, which includes the interpreter and the imported libraries) is that
side's alone. Times are medians over timed steps after one warm-up step, float32 on the CPU, and
the PyTorch models are the tests' equivalents (``tests/torch_models.py``) with the same weights layout.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

FULL_CASES = [("SegNetSmall", (8, 1, 128, 192), 5), ("FCN", (2, 3, 224, 224), 3)]
QUICK_CASES = [("SegNetSmall", (2, 1, 32, 32), 2), ("FCN", (1, 3, 32, 32), 2)]
LEARNING_RATE = 0.01


def _batch(shape):
    import numpy
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal(shape).astype(numpy.float32)
    target = (rng.random((shape[0], 1) + tuple(shape[2:])) > 0.5).astype(numpy.float32)
    return x, target


def _time_steps(step, steps):
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def minidl_step_times(model_name, shape, steps):
    """Seconds per training step of the minidl model, ``steps`` timed steps after one warm-up."""
    import minidl
    import models
    model = models.SegNetSmall() if model_name == "SegNetSmall" else models.FCN(in_channels=3, num_classes=1)
    loss = minidl.losses.BCEDiceLoss()
    optimizer = minidl.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, target = _batch(shape)

    def step():
        optimizer.zero_grad()
        loss(model(x), target)
        model.backward(loss.backward())
        optimizer.step()

    return _time_steps(step, steps)


def torch_step_times(model_name, shape, steps):
    """Seconds per training step of the PyTorch equivalent, same loss and optimizer."""
    import torch
    from torch_models import torch_models
    torch.set_num_threads(os.cpu_count() or 1)
    classes = torch_models(torch)
    if model_name == "SegNetSmall":
        model = classes.SegNetSmall(1, 1, 16, "bilinear")
    else:
        model = classes.FCN(3, 1, (64, 128, 256, 512, 512))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, target = (torch.from_numpy(a) for a in _batch(shape))

    def bce_dice(logits):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        intersection, total = (p * target).sum(dim=(2, 3)), p.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
        return bce + (1 - (2 * intersection + 1) / (total + 1)).mean()

    def step():
        optimizer.zero_grad()
        bce_dice(model(x)).backward()
        optimizer.step()

    return _time_steps(step, steps)


def _worker(framework, model_name, shape, steps):
    measure = minidl_step_times if framework == "minidl" else torch_step_times
    times = measure(model_name, shape, steps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"median_s": statistics.median(times), "times_s": times, "peak_mb": peak_mb}))


def _measure_in_subprocess(framework, model_name, shape, steps):
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework, model_name,
               ",".join(map(str, shape)), str(steps)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"bench/models.py: {framework} {model_name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick=False):
    """Rows, one per model: input shape, median step seconds and peak MB on each side, minidl / PyTorch ratio."""
    rows = []
    for model_name, shape, steps in (QUICK_CASES if quick else FULL_CASES):
        ours = _measure_in_subprocess("minidl", model_name, shape, steps)
        theirs = _measure_in_subprocess("torch", model_name, shape, steps)
        rows.append({"model": model_name, "input": "x".join(map(str, shape)), "steps": steps,
                     "minidl_s": ours["median_s"], "torch_s": theirs["median_s"],
                     "ratio": ours["median_s"] / theirs["median_s"],
                     "minidl_peak_mb": ours["peak_mb"], "torch_peak_mb": theirs["peak_mb"]})
    return rows


def _print_table(rows):
    print(f"{'model':<12} {'input':<14} {'minidl s':>9} {'torch s':>9} {'ratio':>7} {'minidl MB':>10} {'torch MB':>9}")
    for row in rows:
        print(f"{row['model']:<12} {row['input']:<14} {row['minidl_s']:>9.3f} {row['torch_s']:>9.3f} "
              f"{row['ratio']:>7.2f} {row['minidl_peak_mb']:>10.0f} {row['torch_peak_mb']:>9.0f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="minidl vs PyTorch: one training step of each model")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--worker", nargs=4, metavar=("FRAMEWORK", "MODEL", "SHAPE", "STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        framework, model_name, shape, steps = args.worker
        _worker(framework, model_name, tuple(int(s) for s in shape.split(",")), int(steps))
        return
    _print_table(run(quick=args.quick))


if __name__ == "__main__":
    main()
