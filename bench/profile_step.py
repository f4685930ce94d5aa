"""Where a training step's time goes: every leaf module's forward and backward, timed inside the step.

    python -m bench.profile_step                          # SegNetSmall, N=8, 1x128x192 (bench.models' case)
    python -m bench.profile_step FCN 2x3x224x224
    python -m bench.profile_step SegNetSmall 2x1x512x512 --steps 4
    python -m bench.profile_step SegNetSmall 32x1x256x256 --device gpu
    python -m bench.profile_step --engine reference       # the plain ops the docs derive

The same step as ``bench.models`` (forward, BCE+Dice, backward, SGD). Each leaf module's
``forward`` and ``backward`` are timed by a pre-hook and a hook on it; the rows are ms per step,
largest total first, and the last row is the whole step (the rest is the loss, the optimizer
and Python between modules). On the GPU (``--device gpu``) each timer synchronizes the device before and
after the call, so a row is the module's kernels plus its launch overhead. Not part of ``python -m bench``:
it times minidl alone.
"""
import argparse
import collections
import time

from bench.common import add_engine_option, machine_summary, markdown_table, steady_host, use_engine
from bench.models import build_model, minidl_step


def _add_timer(module, label, spent, synchronize):
    """Hooks that add each forward's and backward's wall time in seconds to spent[label, "forward" / "backward"],
    the device synchronized around the call."""
    begin = {}

    def start(side):
        def hook(*_):
            synchronize()
            begin[side] = time.perf_counter()
        return hook

    def stop(side):
        def hook(*_):
            synchronize()
            spent[label, side] += time.perf_counter() - begin[side]
        return hook

    module.register_forward_pre_hook(start("forward"))
    module.register_forward_hook(stop("forward"))
    module.register_full_backward_pre_hook(start("backward"))
    module.register_full_backward_hook(stop("backward"))


def _synchronizer(device):
    """A callable that waits for the device's queued work (nothing to wait for on the CPU)."""
    if device == "cpu":
        return lambda: None
    from minidl.backend import require_gpu
    return require_gpu("bench.profile_step").cuda.get_current_stream().synchronize


def profile(model_name, shape, steps=6, warmup=2, device="cpu"):
    """Rows: module (name: class), forward / backward / total ms per step, largest first, then the step."""
    model = build_model(model_name)
    synchronize = _synchronizer(device)
    spent = collections.defaultdict(float)
    for name, module in model.named_modules():
        if not list(module.children()):
            _add_timer(module, f"{name}: {type(module).__name__}", spent, synchronize)
    step = minidl_step(model_name, shape, model=model, device=device)
    for _ in range(warmup):
        step()
    synchronize()
    spent.clear()
    begin = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    step_ms = 1000.0 * (time.perf_counter() - begin) / steps
    per_step = {label: (1000.0 * spent[label, "forward"] / steps, 1000.0 * spent[label, "backward"] / steps)
                for label, _ in spent}
    rows = [{"module": label, "forward ms": forward, "backward ms": backward, "total ms": forward + backward}
            for label, (forward, backward) in sorted(per_step.items(), key=lambda item: -sum(item[1]))]
    rows.append({"module": "whole step", "forward ms": float("nan"), "backward ms": float("nan"), "total ms": step_ms})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="SegNetSmall", choices=("SegNetSmall", "FCN"))
    parser.add_argument("shape", nargs="?", default=None, help="NxCxHxW (default: bench.models' case)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (default 6, after 2 untimed)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    add_engine_option(parser)
    options = parser.parse_args(argv)
    use_engine(options.engine)
    text = options.shape or {"SegNetSmall": "8x1x128x192", "FCN": "2x3x224x224"}[options.model]
    sizes = text.split("x")
    if len(sizes) != 4 or not all(size.isdigit() and int(size) > 0 for size in sizes):
        parser.error(f"shape must be NxCxHxW with four positive integers, got {text!r}")
    shape = [int(size) for size in sizes]
    print(machine_summary(steady_host()) + "\n")
    print(markdown_table(profile(options.model, shape, steps=options.steps, device=options.device)))


if __name__ == "__main__":
    main()
