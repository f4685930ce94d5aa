"""Held-out cases of assignment 1: ReLU (also in place), the sigmoid, binary cross-entropy on logits.
(The gradient checker is graded on the bug zoo, ``zoo.py``.)"""
import numpy

import minidl

from .cases import Case
from .harness import away_from_zero, layer_case, layer_inputs, loss_case, normal, run_layer, without_overflow

F32, F64 = numpy.float32, numpy.float64
EXTREMES = [-1000.0, -100.0, -40.0, -1.5, 0.0, 0.5, 40.0, 100.0, 1000.0]


def relu(inplace=False):
    return lambda: minidl.nn.ReLU(inplace=inplace)


def run_relu_in_place(inputs):
    """The in-place ReLU's tensors, and whether its output is the very array it was given."""
    tensors = run_layer(relu(inplace=True), inputs)
    x = inputs["x"].copy()
    tensors["output is the input array"] = numpy.array(numpy.shares_memory(minidl.nn.ReLU(inplace=True)(x), x))
    return tensors


def with_zeros(rng, shape, dtype=F64):
    """Entries with about a third exactly zero (ReLU's gradient there is 0, as PyTorch's)."""
    x = away_from_zero(rng, shape, dtype)
    x[rng.random(shape) < 0.35] = 0.0
    return x


def relu_inputs(make_x, shape, dtype=F64):
    return lambda rng: layer_inputs(relu(), make_x(rng, shape, dtype), rng)


def relu_cases():
    return [
        layer_case("float64 (2, 3, 4, 5)", relu(), relu_inputs(away_from_zero, (2, 3, 4, 5))),
        Case("in place, float64 (3, 4, 5)", relu_inputs(away_from_zero, (3, 4, 5)), run_relu_in_place),
        layer_case("exact zeros get gradient 0", relu(), relu_inputs(with_zeros, (4, 6)), numeric=False),
        layer_case("float32 (7,)", relu(), relu_inputs(normal, (7,), F32), F32),
        Case("in place, float32 (2, 2, 3, 3)", relu_inputs(normal, (2, 2, 3, 3), F32), run_relu_in_place, F32),
    ]


def sigmoid():
    return minidl.nn.Sigmoid()


def extremes(dtype):
    return lambda rng: layer_inputs(sigmoid, numpy.array([EXTREMES, EXTREMES[::-1]], dtype), rng)


def run_without_overflow(inputs):
    return without_overflow(lambda: run_layer(sigmoid, inputs))


def sigmoid_inputs(shape, dtype=F64):
    return lambda rng: layer_inputs(sigmoid, normal(rng, shape, dtype, 3.0), rng)


def sigmoid_cases():
    return [
        layer_case("float64 (2, 3, 4, 5)", sigmoid, sigmoid_inputs((2, 3, 4, 5))),
        layer_case("float32 (5, 7)", sigmoid, sigmoid_inputs((5, 7), F32), F32),
        Case("inputs up to +-1000 without overflow, float64", extremes(F64), run_without_overflow),
        Case("inputs up to +-1000 without overflow, float32", extremes(F32), run_without_overflow, F32),
    ]


def bce(reduction="mean", pos_weight=None):
    return lambda: minidl.losses.BCEWithLogitsLoss(reduction=reduction, pos_weight=pos_weight)


def bce_equivalent(reduction="mean", pos_weight=None):
    """F.binary_cross_entropy_with_logits with the loss's settings (targets as the logits' dtype)."""
    def forward(torch, logits, target):
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target.to(logits.dtype),
                                                                    pos_weight=weight, reduction=reduction)
    return forward


def bce_inputs(shape, dtype=F64, scale=2.0, hard=False, upstream=False):
    def draw(rng):
        target = rng.integers(0, 2, shape) if hard else rng.random(shape).astype(dtype)
        return {"logits": normal(rng, shape, dtype, scale), "target": target,
                "upstream": normal(rng, shape, dtype) if upstream else None}
    return draw


def extreme_logits(rng):
    logits = numpy.array([EXTREMES, EXTREMES[::-1], [50.0] * 9], F64)
    return {"logits": logits, "target": rng.random(logits.shape), "upstream": None}


def bce_cases():
    channel_weight = numpy.array([0.5, 2.0, 3.0]).reshape(3, 1, 1)
    column_weight = numpy.array([1.0, 4.0, 0.25, 2.0])
    return [
        loss_case("mean, soft targets, float64 (3, 1, 4, 5)", bce(), bce_inputs((3, 1, 4, 5)),
                  equivalent=bce_equivalent()),
        loss_case("sum, integer targets, float64 (2, 6)", bce("sum"), bce_inputs((2, 6), hard=True),
                  equivalent=bce_equivalent("sum")),
        loss_case("none with an upstream gradient, float64 (2, 3, 4)", bce("none"),
                  bce_inputs((2, 3, 4), upstream=True), equivalent=bce_equivalent("none")),
        loss_case("pos_weight (3, 1, 1), mean, float64 (2, 3, 4, 4)", bce(pos_weight=channel_weight),
                  bce_inputs((2, 3, 4, 4)), equivalent=bce_equivalent(pos_weight=channel_weight)),
        loss_case("pos_weight (4,), none, float32 (3, 4)", bce("none", column_weight),
                  bce_inputs((3, 4), F32, upstream=True), F32, equivalent=bce_equivalent("none", column_weight)),
        loss_case("logits up to +-1000 without overflow, float64", bce(), extreme_logits, equivalent=bce_equivalent(),
                  numeric=False, strict=True),
    ]
