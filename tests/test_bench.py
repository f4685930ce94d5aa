"""The benchmark harness: its FLOP counts, its timing rounds, its allocator setting, its scripts run small."""

import pytest

from bench.common import gflops
from bench.models import step_conv_flop


def test_segnet_small_step_flop_is_three_forwards_less_the_first_input_gradient():
    # SegNetSmall at 1x1x16x16: (C_in, C_out, output side) of each 3x3 conv, in call order
    convs = [(1, 16, 16), (16, 32, 8), (32, 64, 4), (64, 128, 2), (128, 256, 1),
             (256, 128, 2), (128, 64, 4), (64, 32, 8), (32, 16, 16), (16, 1, 16)]
    forward = [2 * c_in * c_out * 9 * side * side for c_in, c_out, side in convs]
    assert step_conv_flop("SegNetSmall", [1, 1, 16, 16]) == 3 * sum(forward) - forward[0]


def test_fcn_step_flop_counts_transposed_convs_over_their_input_pixels():
    # FCN(in_channels=3, num_classes=1) at 2x3x32x32: the encoder convs, the five k=3 s=2 deconvs, the 1x1 classifier
    widths, sides = (64, 128, 256, 512, 512), (32, 16, 8, 4, 2)
    encoder, c_in = [], 3
    for width, side in zip(widths, sides):
        encoder += [(c_in, width, side), (width, width, side)]
        c_in = width
    forward = [2 * 2 * a * b * 9 * s * s for a, b, s in encoder]
    deconvs = [(512, 512, 1), (512, 256, 2), (256, 128, 4), (128, 64, 8), (64, 32, 16)]   # input side
    forward += [2 * 2 * a * b * 9 * s * s for a, b, s in deconvs]
    forward.append(2 * 2 * 32 * 1 * 32 * 32)
    assert step_conv_flop("FCN", [2, 3, 32, 32]) == 3 * sum(forward) - forward[0]


def test_gflops_is_flop_per_nanosecond():
    assert gflops(3e9, 1000.0) == 3.0 and gflops(2e9, 4.0) == 500.0


def test_torch_kernels_names_the_capability_and_the_caps_that_are_set(monkeypatch):
    import types

    from bench.common import torch_kernels
    fake_torch = types.SimpleNamespace(backends=types.SimpleNamespace(
        cpu=types.SimpleNamespace(get_cpu_capability=lambda: "AVX2")))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    assert torch_kernels(fake_torch) == "AVX2 kernels"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert torch_kernels(fake_torch) == "AVX2 kernels; ONEDNN_MAX_CPU_ISA=AVX2"


def test_interleaved_rounds_warm_then_time_each_function_in_turn():
    from bench.common import interleaved_ms
    calls = []
    times = interleaved_ms([lambda: calls.append("a"), lambda: calls.append("b")], rounds=3, warmup=1)
    assert calls == ["a", "a", "b", "b"] * 3
    assert [len(t) for t in times] == [3, 3] and all(t >= 0 for t in times[0] + times[1])


def test_interleaved_times_the_mean_of_each_functions_calls(monkeypatch):
    import bench.common
    from bench.common import interleaved_ms
    clock, calls = [0.0], []

    def ticker(name, seconds):
        """A function that takes ``seconds`` on the fake clock."""
        def call():
            calls.append(name)
            clock[0] += seconds
        return call

    monkeypatch.setattr(bench.common.time, "perf_counter", lambda: clock[0])
    times = interleaved_ms([ticker("a", 0.004), ticker("b", 0.010)], rounds=2, warmup=1, calls=[3, 1])
    assert calls == ["a"] * 4 + ["b"] * 2 + ["a"] * 4 + ["b"] * 2
    # a's three timed calls of 4 ms each: their mean (4 ms), not their sum (12 ms)
    assert times == [pytest.approx([4.0, 4.0]), pytest.approx([10.0, 10.0])]


def test_interleaved_refuses_calls_that_do_not_match_the_functions():
    from bench.common import interleaved_ms
    with pytest.raises(ValueError, match="2 functions, got \\[3\\]"):
        interleaved_ms([lambda: None, lambda: None], rounds=1, calls=[3])
    with pytest.raises(ValueError, match="got \\[1, 0\\]"):
        interleaved_ms([lambda: None, lambda: None], rounds=1, calls=[1, 0])


def test_median_ratio_takes_each_rounds_ratio_then_the_middle():
    from bench.common import median_ratio
    assert median_ratio([2.0, 32.0, 8.0], [1.0, 2.0, 2.0]) == 4.0      # rounds' ratios 2, 16, 4
    # rounds' ratios 10, 10, 30 -> 10, where the ratio of the medians would be 40 / 3
    assert median_ratio([10.0, 40.0, 90.0], [1.0, 4.0, 3.0]) == 10.0


def test_profile_step_times_every_leaf_module_inside_the_step():
    from bench.models import build_model
    from bench.profile_step import profile
    rows = profile("SegNetSmall", [1, 1, 16, 16], steps=1, warmup=1)
    leaves = {f"{name}: {type(module).__name__}" for name, module in build_model("SegNetSmall").named_modules()
              if not list(module.children())}
    *modules, step = rows
    assert {row["module"] for row in modules} == leaves and step["module"] == "whole step"
    assert all(row["forward ms"] > 0 and row["backward ms"] > 0 for row in modules)
    assert [row["total ms"] for row in modules] == sorted((row["total ms"] for row in modules), reverse=True)
    assert sum(row["total ms"] for row in modules) < step["total ms"]


def test_python_m_bench_leaves_the_profiler_out():
    from bench.__main__ import script_names
    assert not {"profile_step", "inspect_overhead"} & set(script_names()) and "models" in script_names()


def test_the_harness_times_with_freed_memory_kept_and_says_so():
    """After ``steady_host`` a freed 24 MiB array's memory is handed out again without page faults (with
    glibc's defaults the second such array still faults about 500 times here) and NumPy's buffers hold 256
    elements; the header line says so."""
    import platform
    import subprocess
    import sys

    from bench.common import REPOSITORY, machine_summary
    assert machine_summary("glibc keeps freed memory").endswith(", glibc keeps freed memory")
    program = ("import resource, numpy\n"
               "from bench.common import steady_host\n"
               "print(steady_host())\n"
               "print(numpy.getbufsize())\n"
               "faults = []\n"
               "for _ in range(4):\n"
               "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
               "    numpy.ones(6 << 20, dtype=numpy.float32).sum()\n"
               "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
               "print(max(faults[1:]))\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=REPOSITORY, capture_output=True, text=True,
                            check=True)
    words, buffer_size, faults = result.stdout.split("\n")[:3]
    assert words.endswith(", NumPy buffers of 256 elements") and buffer_size == "256", result.stdout
    # decided by the platform, not by steady_host's own answer, which a broken harness could get wrong
    if platform.libc_ver()[0] != "glibc":
        assert words.startswith("allocator defaults,"), result.stdout
        pytest.skip("not glibc: the allocator cannot be told to keep freed memory")
    assert words.startswith("glibc keeps freed memory,") and int(faults) < 200, result.stdout


def test_engine_option_times_the_named_engine_here_and_in_memory_subprocesses(monkeypatch):
    import os

    import minidl
    from bench.common import machine_summary, use_engine
    monkeypatch.setenv("MINIDL_ENGINE", "fast")
    with minidl.engine("fast"):
        use_engine(None)
        assert minidl.get_engine() == "fast" and ", minidl engine fast" in machine_summary()
        use_engine("reference")
        assert minidl.get_engine() == "reference" and os.environ["MINIDL_ENGINE"] == "reference"
        assert ", minidl engine reference" in machine_summary()


def test_the_model_script_times_both_sides_in_rounds_and_takes_the_rounds_ratio(torch):
    import math

    from bench.models import step_times
    minidl_ms, torch_ms, ratio = step_times("SegNetSmall", [1, 1, 16, 16], torch, quick=True)
    assert minidl_ms > 0 and torch_ms > 0 and math.isfinite(ratio) and ratio > 0


def test_the_layer_script_times_every_case_on_both_sides(torch):
    """A smoke run of ``bench/layers.py`` at its quick sizes: a forward and a forward+backward row per case,
    each timed on both sides (the torch fixture fails or skips where PyTorch is missing, as the suite says)."""
    import math

    from bench import layers
    rows = layers.run(quick=True)
    assert [(row["layer"], row["pass"]) for row in rows] == [(name, step) for name, _, _ in layers.CASES
                                                             for step in ("fwd", "fwd+bwd")]
    for row in rows:
        assert row["minidl ms"] > 0 and row["torch ms"] > 0 and math.isfinite(row["ratio"]), row


def test_inspect_overhead_times_both_kinds_of_step():
    from bench.inspect_overhead import measure
    plain, inspected = measure(batch=1, size=16, rounds=2)
    assert 0 < plain < 10_000 and 0 < inspected < 10_000
