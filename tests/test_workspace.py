"""The scratch-buffer workspace behind im2col, col2im and the transposed conv's columns."""
import numpy

from minidl.functional.workspace import Workspace


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
