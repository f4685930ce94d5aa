"""The bug zoo: small layers and losses, most with one realistic bug in their backward pass, on which the
student's gradient checker is graded.

Each member is written here in plain NumPy (nothing of the copy's but ``Module`` and ``Parameter``), with a
correct forward. The student's ``minidl.gradcheck.check_module`` (``check_loss`` for a loss) runs on it; the
member is flagged when any returned relative error exceeds ``FLAG_THRESHOLD``. A member is graded right when
a broken one is flagged and a correct one is not; the task's points are shared equally among the members.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy

import minidl.gradcheck
from minidl.nn import Module
from minidl.parameter import Parameter

from .cases import CaseResult, failure

FLAG_THRESHOLD = 1e-5
AXES = (0, 2, 3)


def normal(shape, seed, scale=1.0):
    return scale * numpy.random.default_rng(seed).standard_normal(shape)


def sigmoid(x):
    return 0.5 * (1 + numpy.tanh(0.5 * x))


def window(array, i, j, h, w):
    """array[:, :, i:i + h, j:j + w]: the slice kernel tap (i, j) meets."""
    return array[:, :, i:i + h, j:j + w]


class Conv3x3(Module):
    """3x3 convolution with padding 1 by shifted slices. Bugs: "unflipped" (the input gradient correlates
    dy with the kernel as is instead of its 180-degree turn), "no bias gradient"."""

    def __init__(self, bug=None, in_channels=2, out_channels=3):
        super().__init__()
        self.bug = bug
        self.weight = Parameter(normal((out_channels, in_channels, 3, 3), 1, 0.5))
        self.bias = Parameter(normal(out_channels, 2))

    def forward(self, x):
        self.padded = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, w = x.shape[2:]
        y = sum(numpy.einsum("nchw,oc->nohw", window(self.padded, i, j, h, w), self.weight.data[:, :, i, j])
                for i in range(3) for j in range(3))
        return y + self.bias.data.reshape(1, -1, 1, 1)

    def backward(self, dy):
        h, w = dy.shape[2:]
        dx = numpy.zeros_like(self.padded)
        for i in range(3):
            for j in range(3):
                tap = (2 - i, 2 - j) if self.bug == "unflipped" else (i, j)
                window(dx, i, j, h, w)[...] += numpy.einsum("nohw,oc->nchw", dy, self.weight.data[:, :, tap[0], tap[1]])
                self.weight.grad[:, :, i, j] += numpy.einsum("nohw,nchw->oc", dy, window(self.padded, i, j, h, w))
        if self.bug != "no bias gradient":
            self.bias.grad += dy.sum(axis=AXES)
        return dx[:, :, 1:-1, 1:-1]


class TransposedConv3x3(Module):
    """3x3 transposed convolution, stride 1, padding 1. Bug "padding off by one": backward pads dy by 2 and 0
    instead of 1 and 1 (the gradient lands one pixel off)."""

    def __init__(self, bug=None, in_channels=2, out_channels=2):
        super().__init__()
        self.bug = bug
        self.weight = Parameter(normal((in_channels, out_channels, 3, 3), 3, 0.5))
        self.bias = Parameter(normal(out_channels, 4))

    def forward(self, x):
        self.x = x
        n, _, h, w = x.shape
        full = numpy.zeros((n, self.weight.data.shape[1], h + 2, w + 2))
        for i in range(3):
            for j in range(3):
                window(full, i, j, h, w)[...] += numpy.einsum("nchw,co->nohw", x, self.weight.data[:, :, i, j])
        return full[:, :, 1:-1, 1:-1] + self.bias.data.reshape(1, -1, 1, 1)

    def backward(self, dy):
        h, w = self.x.shape[2:]
        before, after = (2, 0) if self.bug else (1, 1)
        full = numpy.pad(dy, ((0, 0), (0, 0), (before, after), (before, after)))
        dx = numpy.zeros_like(self.x)
        for i in range(3):
            for j in range(3):
                dx += numpy.einsum("nohw,co->nchw", window(full, i, j, h, w), self.weight.data[:, :, i, j])
                self.weight.grad[:, :, i, j] += numpy.einsum("nchw,nohw->co", self.x, window(full, i, j, h, w))
        self.bias.grad += dy.sum(axis=AXES)
        return dx


class BatchNormTraining(Module):
    """Batch normalisation in training mode (batch statistics). Bug "missing 1/N": the mean terms of the
    input gradient are sums."""

    def __init__(self, bug=None, channels=3):
        super().__init__()
        self.bug = bug
        self.weight = Parameter(1 + normal(channels, 5, 0.3))
        self.bias = Parameter(normal(channels, 6))

    def forward(self, x):
        mean, var = x.mean(axis=AXES, keepdims=True), x.var(axis=AXES, keepdims=True)
        self.inv_std = 1 / numpy.sqrt(var + 1e-5)
        self.xhat = (x - mean) * self.inv_std
        return self.weight.data.reshape(1, -1, 1, 1) * self.xhat + self.bias.data.reshape(1, -1, 1, 1)

    def backward(self, dy):
        count = 1 if self.bug else dy.size // dy.shape[1]
        dbias, dweight = dy.sum(axis=AXES), (dy * self.xhat).sum(axis=AXES)
        self.bias.grad += dbias
        self.weight.grad += dweight
        scale = self.weight.data.reshape(1, -1, 1, 1) * self.inv_std
        return scale * (dy - dbias.reshape(1, -1, 1, 1) / count - self.xhat * dweight.reshape(1, -1, 1, 1) / count)


class Unpool2x2(Module):
    """Max-unpooling 2x2, stride 2: forward(x, indices). Bug "transposed index": backward reads each plane of
    dy column by column, so gradients come from the wrong cells."""

    def __init__(self, bug=None):
        super().__init__()
        self.bug = bug

    def forward(self, x, indices):
        n, c, h, w = x.shape
        self.indices, self.x_shape = indices.reshape(n * c, h * w), x.shape
        y = numpy.zeros((n * c, 4 * h * w))
        y[numpy.arange(n * c)[:, None], self.indices] = x.reshape(n * c, h * w)
        return y.reshape(n, c, 2 * h, 2 * w)

    def backward(self, dy):
        planes = dy.transpose(0, 1, 3, 2) if self.bug else dy
        flat = planes.reshape(self.indices.shape[0], -1)
        return flat[numpy.arange(flat.shape[0])[:, None], self.indices].reshape(self.x_shape)


class SigmoidLayer(Module):
    """y = sigmoid(x). Bug "derivative at the pre-activation": dx = dy * x (1 - x) instead of y (1 - y)."""

    def __init__(self, bug=None):
        super().__init__()
        self.bug = bug

    def forward(self, x):
        self.x, self.y = x, sigmoid(x)
        return self.y

    def backward(self, dy):
        at = self.x if self.bug else self.y
        return dy * at * (1 - at)


def interpolation(in_size, out_size, align_corners):
    """The (out, in) bilinear interpolation matrix along one axis (PyTorch's source positions)."""
    destination = numpy.arange(out_size)
    if align_corners:
        source = destination * (in_size - 1) / (out_size - 1)
    else:
        source = numpy.maximum((destination + 0.5) * in_size / out_size - 0.5, 0)
    first = numpy.minimum(numpy.floor(source).astype(int), in_size - 1)
    second, weight = numpy.minimum(first + 1, in_size - 1), source - first
    matrix = numpy.zeros((out_size, in_size))
    matrix[destination, first] += 1 - weight
    matrix[destination, second] += weight
    return matrix


class BilinearTwice(Module):
    """Bilinear x2 with align_corners=True. Bug "align_corners mixed up": backward uses the align_corners=False
    matrices."""

    def __init__(self, bug=None):
        super().__init__()
        self.bug = bug

    def forward(self, x):
        self.shape = x.shape[2:]
        rows, columns = (interpolation(size, 2 * size, True) for size in self.shape)
        return rows @ x @ columns.T

    def backward(self, dy):
        rows, columns = (interpolation(size, 2 * size, not self.bug) for size in self.shape)
        return rows.T @ dy @ columns


class DiceMean:
    """Soft Dice loss of sigmoid probabilities per (n, c) plane, mean over planes, smooth 1. Bug "smooth in
    the wrong place": backward recomputes the coefficient as 2 I / (P + T + smooth)."""

    smooth = 1.0

    def __init__(self, bug=None):
        self.bug = bug

    def __call__(self, logits, target):
        p = sigmoid(logits)
        intersection = (p * target).sum(axis=(2, 3), keepdims=True)
        denominator = p.sum(axis=(2, 3), keepdims=True) + target.sum(axis=(2, 3), keepdims=True) + self.smooth
        self.cache = p, target, intersection, denominator
        return float(numpy.mean(1 - (2 * intersection + self.smooth) / denominator))

    def backward(self):
        p, target, intersection, denominator = self.cache
        numerator = 2 * intersection + (0 if self.bug else self.smooth)
        planes = intersection.size
        return (numerator / denominator - 2 * target) / denominator * p * (1 - p) / planes


class BCEMean:
    """Binary cross-entropy on logits, mean over elements. Bug "mean without 1/N": backward returns the sum's
    gradient."""

    def __init__(self, bug=None):
        self.bug = bug

    def __call__(self, logits, target):
        self.cache = logits, target
        losses = numpy.maximum(logits, 0) - logits * target + numpy.log1p(numpy.exp(-numpy.abs(logits)))
        return float(losses.mean())

    def backward(self):
        logits, target = self.cache
        return (sigmoid(logits) - target) / (1 if self.bug else logits.size)


def unpool_inputs(rng):
    """x (1, 2, 3, 3) and the indices of a 2x2 pool of a 6x6 plane (one random cell of each window)."""
    rows = 2 * numpy.arange(3)[:, None] + rng.integers(0, 2, (1, 2, 3, 3))
    columns = 2 * numpy.arange(3)[None, :] + rng.integers(0, 2, (1, 2, 3, 3))
    return rng.standard_normal((1, 2, 3, 3)), rows * 6 + columns


def planes(rng):
    """Logits (2, 1, 3, 3) and soft targets of the same shape."""
    return 2 * rng.standard_normal((2, 1, 3, 3)), rng.random((2, 1, 3, 3))


@dataclass(frozen=True)
class Member:
    layer: str
    bug: Optional[str]        # None: the member is correct
    build: Callable           # () -> a Module, or a loss object when ``loss``
    inputs: Callable          # rng -> forward arguments (a tuple), or (logits, target) for a loss
    loss: bool = False

    @property
    def name(self):
        return f"{self.layer}: {self.bug or 'correct'}"

    def errors(self, rng):
        """The student's checker's errors on this member: {tensor: relative error}."""
        if self.loss:
            return {"logits": minidl.gradcheck.check_loss(self.build(), *self.inputs(rng))}
        return minidl.gradcheck.check_module(self.build(), self.inputs(rng))


def image(shape):
    return lambda rng: (rng.standard_normal(shape),)


MEMBERS = (
    Member("Conv3x3", "unflipped kernel in the input gradient", lambda: Conv3x3("unflipped"), image((2, 2, 4, 5))),
    Member("Conv3x3 (one output channel)", "no bias gradient",
           lambda: Conv3x3("no bias gradient", out_channels=1), image((2, 2, 4, 4))),
    Member("TransposedConv3x3", "padding off by one in backward", lambda: TransposedConv3x3("off by one"),
           image((1, 2, 4, 4))),
    Member("BatchNormTraining", "input gradient missing the 1/N of the means", lambda: BatchNormTraining("1/N"),
           image((4, 3, 2, 3))),
    Member("Unpool2x2", "gradient gathered from the wrong index", lambda: Unpool2x2("transposed"), unpool_inputs),
    Member("SigmoidLayer", "derivative at the pre-activation", lambda: SigmoidLayer("pre-activation"),
           image((2, 3, 4))),
    Member("BilinearTwice", "align_corners mixed up in backward", lambda: BilinearTwice("mixed"), image((1, 2, 3, 4))),
    Member("DiceMean", "smooth in the wrong place in backward", lambda: DiceMean("smooth"), planes, loss=True),
    Member("BCEMean", "mean's gradient without the 1/N", lambda: BCEMean("1/N"), planes, loss=True),
    Member("Conv3x3", None, Conv3x3, image((2, 2, 4, 5))),
    Member("BatchNormTraining", None, BatchNormTraining, image((4, 3, 2, 3))),
    Member("Unpool2x2", None, Unpool2x2, unpool_inputs),
    Member("DiceMean", None, DiceMean, planes, loss=True),
)


@dataclass(frozen=True)
class ZooCase:
    """One zoo member as a case of the gradcheck task."""
    member: Member
    equivalent: None = None

    @property
    def name(self):
        return self.member.name

    def grade(self, versions, task_name, student_dir, seed):
        """Run the student's checker on the member (every other task's functions the instructor's)."""
        versions.use_instructor_everywhere()
        try:
            versions.use(task_name, "student")
            errors = self.member.errors(numpy.random.default_rng(seed))
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            return failure(self.name, error, student_dir)
        finally:
            versions.use(task_name, "instructor")
        return verdict(self.member, errors)


def finite_number(value):
    """``value`` as a float when it is one real, finite number (a Python or NumPy scalar, a 0-d array), else
    None."""
    if isinstance(value, (str, bytes)) or numpy.ndim(value) != 0 or numpy.iscomplexobj(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if numpy.isfinite(number) else None


def verdict(member, errors):
    """The CaseResult of the checker's ``errors`` ({tensor: relative error}) on ``member``."""
    numbers = {str(tensor): finite_number(value) for tensor, value in errors.items()} \
        if isinstance(errors, dict) else {}
    if not numbers or None in numbers.values():
        shown = repr(errors) if len(repr(errors)) <= 200 else repr(errors)[:197] + "..."
        return CaseResult(member.name, False, f"wrong: the checker returned {shown} on {member.name}, "
                                              "not a dict of finite relative errors")
    errors = numbers
    largest = max(errors.values())
    flagged = largest > FLAG_THRESHOLD
    if member.bug and not flagged:
        reason = f"wrong: missed the bug in {member.name} (largest error {largest:.1e})"
    elif not member.bug and flagged:
        reason = f"wrong: false alarm on a correct {member.layer} (error {largest:.1e})"
    else:
        reason = "ok"
    return CaseResult(member.name, reason == "ok", reason, errors)


def zoo_cases():
    return [ZooCase(member) for member in MEMBERS]
