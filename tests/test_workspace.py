"""The scratch-buffer workspace behind im2col, col2im and the transposed conv's columns."""
import threading

import numpy
import pytest

from minidl.fast.conv import conv2d_backward, conv2d_forward
from minidl.fast.workspace import Workspace, accumulate_product, workspace
from minidl.nn import Conv2d

pytestmark = pytest.mark.engines("fast")  # the fast engine's internals


def test_a_role_reuses_its_buffer_and_grows_only_when_asked_for_more():
    workspace = Workspace()
    like = numpy.zeros(1, dtype=numpy.float32)
    first = workspace.take("cols", (4, 5), numpy.float32, like)
    first[...] = 7
    second = workspace.take("cols", (2, 3), numpy.float32, like)
    assert numpy.shares_memory(first, second) and second.shape == (2, 3) and second.dtype == numpy.float32
    assert workspace.nbytes() == 4 * 5 * 4
    bigger = workspace.take("cols", (10, 10), numpy.float64, like)
    assert bigger.shape == (10, 10) and bigger.dtype == numpy.float64
    assert not numpy.shares_memory(first, bigger) and workspace.nbytes() == 10 * 10 * 8


def test_roles_do_not_share_memory_and_clear_releases_everything():
    workspace = Workspace()
    like = numpy.zeros(1)
    a = workspace.take("a", (8,), numpy.float64, like)
    b = workspace.take("b", (8,), numpy.float64, like)
    assert not numpy.shares_memory(a, b)
    workspace.clear()
    assert workspace.nbytes() == 0
    assert not numpy.shares_memory(workspace.take("a", (8,), numpy.float64, like), a)


def test_each_thread_gets_its_own_buffers():
    workspace = Workspace()
    like = numpy.zeros(1)
    here = workspace.take("cols", (8,), numpy.float64, like)
    there = []
    thread = threading.Thread(target=lambda: there.append(workspace.take("cols", (8,), numpy.float64, like)))
    thread.start()
    thread.join()
    assert not numpy.shares_memory(here, there[0])
    assert numpy.shares_memory(here, workspace.take("cols", (8,), numpy.float64, like))


def test_layers_running_in_two_threads_at_once_give_their_serial_results(rng):
    # Winograd (64 -> 64) and im2col (4 -> 8) convs share workspace roles; with one set of buffers for
    # both threads, one thread's columns overwrite the other's mid-layer and the results are garbage
    layers = [Conv2d(64, 64, 3, padding=1), Conv2d(4, 8, 3, padding=1)]
    batches = [[rng.standard_normal((2, layer.in_channels, 24, 24)).astype(numpy.float32) for layer in layers]
               for _ in range(2)]

    def run(batch):
        outputs = []
        for layer, x in zip(layers, batch):
            y, cache = conv2d_forward(x, layer.weight.data, layer.bias.data, (1, 1), (1, 1), (1, 1))
            outputs += [y, *conv2d_backward(numpy.ones_like(y), cache)]
        return outputs

    serial = [run(batch) for batch in batches]
    start = threading.Barrier(2)
    threaded, failures = [[], []], []

    def worker(index):
        try:
            start.wait()
            for _ in range(20):
                threaded[index].append(run(batches[index]))
        except BaseException as error:  # a thread's exception does not reach pytest: hand it to the test
            failures.append(f"thread {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for index in range(2):
        assert len(threaded[index]) == 20, f"thread {index} finished {len(threaded[index])} of 20 runs"
        for outputs in threaded[index]:
            assert len(outputs) == len(serial[index])
            for got, expected in zip(outputs, serial[index]):
                numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_accumulate_product_writes_the_first_product_and_adds_the_rest_through_one_buffer(rng):
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 5, 2))
    total = numpy.full((4, 2), numpy.nan)     # whatever it held, the first product replaces it
    accumulate_product(total, a[0], b[0], True, "test.product")
    numpy.testing.assert_array_equal(total, a[0] @ b[0])
    accumulate_product(total, a[1], b[1], False, "test.product")
    buffer = workspace.take("test.product", (4, 2), numpy.float64, total)
    accumulate_product(total, a[2], b[2], False, "test.product")
    numpy.testing.assert_allclose(total, a[0] @ b[0] + a[1] @ b[1] + a[2] @ b[2], rtol=1e-14)
    numpy.testing.assert_array_equal(buffer, a[2] @ b[2])    # the later products went through the role's buffer
