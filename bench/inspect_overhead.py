"""What ``--inspect`` costs: SegNetSmall training steps with and without an ``Inspector``, interleaved.

    python -m bench.inspect_overhead                      # CPU, batch 4 of 1x128x128 (train_lung.py's default)
    python -m bench.inspect_overhead --device gpu --batch 32 --size 256
    OPENBLAS_NUM_THREADS=1 python -m bench.inspect_overhead --clock process   # CPU time: other jobs matter less

Rounds alternate: 4 plain steps, then 4 steps with an Inspector attached (each round attaches a new one
and takes one untimed step first, as its first step copies the weights once). The median over rounds of
the mean step time is reported for each, and the overhead between them. On the GPU the device is
synchronized after every step.
"""
import argparse
import time

import numpy

from bench.common import machine_summary


def measure(device="cpu", batch=4, size=128, rounds=10, steps=4, clock=time.perf_counter):
    """(plain ms, inspected ms) per step: medians over ``rounds`` interleaved rounds of ``steps`` steps, timed by
    ``clock`` (wall time by default; ``time.process_time`` counts this process's CPU time)."""
    import minidl
    import models
    from minidl import backend, losses, optim
    from minidl.inspect import Inspector
    minidl.manual_seed(0)
    model = models.SegNetSmall().to(device)
    optimizer = optim.Adam(model.parameters(), lr=2e-3)
    loss = losses.BCEDiceLoss()
    rng = numpy.random.default_rng(0)
    x = backend.to_device(rng.standard_normal((batch, 1, size, size)).astype(numpy.float32), device)
    target = backend.to_device((rng.random((batch, 1, size, size)) > 0.5).astype(numpy.float32), device)
    synchronize = (lambda: None) if device == "cpu" else \
        backend.require_gpu("bench.inspect_overhead").cuda.get_current_stream().synchronize

    def step(inspector):
        optimizer.zero_grad()
        loss(model(x), target)
        model.backward(loss.backward())
        optimizer.step()
        if inspector is not None:
            inspector.end_step()
        synchronize()

    def timed_round(inspector):
        if inspector is not None:
            step(inspector)
        begin = clock()
        for _ in range(steps):
            step(inspector)
        return 1000.0 * (clock() - begin) / steps

    for _ in range(2):
        step(None)
    plain, inspected = [], []
    for _ in range(rounds):
        plain.append(timed_round(None))
        with Inspector(model) as inspector:
            inspected.append(timed_round(inspector))
    return float(numpy.median(plain)), float(numpy.median(inspected))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.inspect_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="wall time, or this process's CPU time (CPU only: a GPU's work is not counted)")
    options = parser.parse_args(argv)
    clock = time.process_time if options.clock == "process" else time.perf_counter
    plain, inspected = measure(options.device, options.batch, options.size, options.rounds, clock=clock)
    print(machine_summary())
    print(f"SegNetSmall, batch {options.batch} of 1x{options.size}x{options.size}, {options.device}: "
          f"plain {plain:.2f} ms/step, with --inspect's Inspector {inspected:.2f} ms/step, overhead "
          f"{100.0 * (inspected / plain - 1):+.1f}% ({options.clock} time, medians of {options.rounds} interleaved "
          "rounds of 4 steps)")


if __name__ == "__main__":
    main()
