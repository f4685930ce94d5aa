"""Timing helpers shared by the benchmark scripts.

Every script in ``bench/`` exposes ``run(quick=False) -> rows`` (a list of
dicts with the same keys) and prints them with ``markdown_table``. Timings are
medians over repeats after warm-up calls; a script times all of minidl first
and all of PyTorch after, in separate blocks, so neither library's threads or
caches disturb the other's measurements. Both are timed with the C allocator
keeping freed memory and NumPy's 256-element buffers (``steady_host``). Peak memory is measured in a fresh
subprocess, so one measurement never inherits another's high-water mark.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from minidl import get_engine, set_engine

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def core_count():
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def import_torch():
    """PyTorch with one thread per core, or None when it is not installed (the torch columns stay empty)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(core_count())
    return torch


def median_ms(function, warmup=2, repeats=None, min_seconds=1.0, max_repeats=30, quick=False):
    """Median wall time of ``function()`` in milliseconds.

    After ``warmup`` untimed calls it repeats until ``min_seconds`` have passed
    (at least 3 and at most ``max_repeats`` calls), or exactly ``repeats`` times
    when given. ``quick`` means one warm-up and two timed calls.
    """
    if quick:
        warmup, repeats = 1, 2
    for _ in range(warmup):
        function()
    times = []
    started = time.perf_counter()
    while True:
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
        if repeats is not None:
            if len(times) >= repeats:
                break
        elif len(times) >= max_repeats or (len(times) >= 3 and time.perf_counter() - started >= min_seconds):
            break
    return 1000.0 * statistics.median(times)


def interleaved_ms(functions, rounds=7, warmup=1, quick=False, calls=None):
    """Wall times in ms of ``functions`` timed in rounds: a list of ``rounds`` times per function.

    Each round calls every function in turn ``warmup`` times untimed, then ``calls[k]`` times (default
    1) timed, and records the mean of those calls, so a timed call follows calls of its own kind (as
    consecutive training steps do) while the machine's drift over seconds falls on all functions alike.
    Giving a fast function proportionally more calls times every function over about the same span
    of each round. ``quick``: two rounds.
    """
    if quick:
        rounds = 2
    calls = [1] * len(functions) if calls is None else list(calls)
    if len(calls) != len(functions) or min(calls, default=1) < 1:
        raise ValueError(f"interleaved_ms: calls needs a count >= 1 for each of the {len(functions)} functions, "
                         f"got {calls}")
    times = [[] for _ in functions]
    for _ in range(rounds):
        for function, count, spent in zip(functions, calls, times):
            for _ in range(warmup):
                function()
            begin = time.perf_counter()
            for _ in range(count):
                function()
            spent.append(1000.0 * (time.perf_counter() - begin) / count)
    return times


def median_ratio(times, reference):
    """Median over rounds of times[r] / reference[r]: each round's ratio, then the middle one."""
    return statistics.median(t / r for t, r in zip(times, reference))


def gflops(flop, milliseconds):
    """Throughput in GFLOP/s of ``flop`` floating-point operations done in ``milliseconds``."""
    return flop / (milliseconds * 1e6) if milliseconds and milliseconds == milliseconds else float("nan")


def peak_rss_mib(setup, *arguments):
    """Memory of one step in a fresh Python process: (peak MiB, step MiB).

    ``setup`` is ``"package.module:function"``, importable from the repository
    root; ``function(*arguments)`` (JSON values) imports what it needs, builds
    the inputs and returns the step, a callable that is run once. The peak
    includes the interpreter, the libraries and the inputs, as a user would see
    it; the step figure is how far the step raised the peak above the resident
    size just before it (its working memory).
    """
    module_name, function_name = setup.split(":")
    program = ("import importlib, json, sys\n"
               "from bench.common import own_peak_rss_mib, own_rss_mib\n"
               f"setup = getattr(importlib.import_module({module_name!r}), {function_name!r})\n"
               "step = setup(*json.loads(sys.argv[1]))\n"
               "before = own_rss_mib()\n"
               "step()\n"
               "print(own_peak_rss_mib(), own_peak_rss_mib() - before)")
    environment = dict(os.environ, PYTHONPATH=REPOSITORY + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", program, json.dumps(list(arguments))], cwd=REPOSITORY,
                            env=environment, capture_output=True, text=True, check=True)
    peak, step = result.stdout.strip().splitlines()[-1].split()
    return float(peak), float(step)


def _proc_status_mib(field):
    """A memory field of /proc/self/status in MiB, or None where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def own_rss_mib():
    """This process's current resident memory in MiB (its peak where /proc is missing)."""
    current = _proc_status_mib("VmRSS")
    return own_peak_rss_mib() if current is None else current


def own_peak_rss_mib():
    """This process's peak resident memory in MiB.

    Linux's VmHWM (reset by exec) is preferred: ``ru_maxrss`` of a child started
    by fork+exec also counts the parent's memory at the time of the fork.
    """
    peak = _proc_status_mib("VmHWM")
    if peak is not None:
        return peak
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1024.0 ** 2 if sys.platform == "darwin" else value / 1024.0


def format_value(value):
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(rows):
    """The rows (dicts with the same keys) as a markdown table."""
    if not rows:
        return "(no rows)"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_value(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def torch_kernels(torch):
    """PyTorch's CPU kernel instruction set ("AVX512 kernels", capped by ATEN_CPU_CAPABILITY), and the caps
    on oneDNN's and MKL's (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) where set."""
    caps = [f"{name}={os.environ[name]}" for name in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
            if os.environ.get(name)]
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "unknown")()
    return "; ".join([f"{capability} kernels"] + caps)


def steady_host():
    """Set the host up as ``train_lung.py`` does before anything is timed: glibc keeps freed memory for
    reuse, NumPy loops over strided rows without copying them through its buffers; returns the words for
    the header line.

    With glibc's defaults, whether a step's large arrays page-fault on every 4 KiB page (about 2 us a
    page here) depends on what the process allocated and freed before: PyTorch's (8,16->32,128x192)
    conv took 48 ms a call (23,000 page faults) until a large batch norm had run in the same process,
    then 21 ms (none). Both libraries are timed in this steady state
    (``minidl/backend.py::reuse_freed_host_memory``, ``loop_over_strided_rows``); peak memory is still
    measured in a fresh process with the defaults.
    """
    from minidl.backend import UNBUFFERED_ROW_ELEMENTS, loop_over_strided_rows, reuse_freed_host_memory
    allocator = "glibc keeps freed memory" if reuse_freed_host_memory() else "allocator defaults"
    loop_over_strided_rows()
    return f"{allocator}, NumPy buffers of {UNBUFFERED_ROW_ELEMENTS} elements"


def machine_summary(host_settings=None):
    """One line naming the machine, the thread counts and the library versions."""
    import numpy

    from minidl.backend import blas_core
    torch = import_torch()
    torch_text = (f"torch {torch.__version__} ({torch.get_num_threads()} threads, {torch_kernels(torch)})"
                  if torch else "torch absent")
    core = blas_core()
    blas = f"OpenBLAS kernels {core}" if core else "BLAS kernels unknown"
    settings_text = f", {host_settings}" if host_settings else ""
    return (f"{core_count()} cores, Python {sys.version.split()[0]}, numpy {numpy.__version__} ({blas}), "
            f"{torch_text}, minidl engine {get_engine()}{settings_text}")


def add_engine_option(parser):
    """``--engine reference|fast`` on a benchmark's command line (default: MINIDL_ENGINE, else fast)."""
    from minidl.engines import ENGINES
    parser.add_argument("--engine", choices=ENGINES,
                        help="the minidl engine to time (default: MINIDL_ENGINE, else fast)")


def use_engine(name):
    """Time minidl on engine ``name`` (None: leave it as it is), here and in the memory subprocesses."""
    if name is not None:
        os.environ["MINIDL_ENGINE"] = name
        set_engine(name)


def script_main(name, run, description, argv=None):
    """The command line of one benchmark script: ``python -m bench.NAME [--quick]`` prints its table."""
    import argparse
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test")
    add_engine_option(parser)
    options = parser.parse_args(argv)
    use_engine(options.engine)
    print(machine_summary(steady_host()) + "\n")
    print(markdown_table(run(quick=options.quick)))
