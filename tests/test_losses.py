"""Losses: finite differences, PyTorch parity (values and gradients), extreme logits, combining, bad input."""
import numpy
import pytest
from helpers import assert_close, gpu_or_skip

import minidl
from minidl import losses
from minidl.gradcheck import TOLERANCE, check_loss

SHAPE = (2, 3, 4, 5)
REDUCTIONS = ["mean", "sum", "none"]
RTOL = {numpy.float64: 1e-7, numpy.float32: 1e-5}


def binary(rng, shape=SHAPE):
    return (rng.random(shape) > 0.5).astype(numpy.float64)


def class_targets(rng, classes=3, shape=(2, 4, 5), ignored=0):
    target = rng.integers(0, classes, shape)
    target.reshape(-1)[rng.choice(target.size, ignored, replace=False)] = -100
    return target


def minidl_value_and_gradient(loss, logits, target, upstream):
    value = loss(logits, target)
    gradient = loss.backward(upstream if loss.reduction == "none" else None)
    return value, gradient


def torch_value_and_gradient(torch, function, logits, upstream):
    x = torch.tensor(logits, requires_grad=True)
    value = function(x)
    value.backward(torch.tensor(upstream) if value.ndim else None)
    return value.detach().numpy(), x.grad.numpy()


def assert_matches(actual, expected, dtype, name):
    """Close within the dtype's rtol, relative to the largest expected magnitude."""
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert numpy.all(numpy.isfinite(actual)), f"{name}: not finite"
    scale = float(numpy.max(numpy.abs(expected))) if expected.size else 0.0
    assert_close(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, name=name)


def torch_dice(torch, smooth, from_logits, reduction, target):
    """An independent soft-Dice reference written with torch ops (autograd gives the gradient)."""
    def function(x):
        t = torch.tensor(target)
        p = torch.sigmoid(x) if from_logits else x
        dice = (2 * (p * t).sum((-2, -1)) + smooth) / (p.sum((-2, -1)) + t.sum((-2, -1)) + smooth)
        per_plane = 1 - dice
        return {"mean": per_plane.mean, "sum": per_plane.sum, "none": lambda: per_plane}[reduction]()
    return function


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_gradcheck(rng, reduction, with_pos_weight):
    pos_weight = rng.uniform(0.5, 3.0, (3, 1, 1)) if with_pos_weight else None
    loss = losses.BCEWithLogitsLoss(reduction, pos_weight=pos_weight)
    assert check_loss(loss, 2 * rng.standard_normal(SHAPE), rng.random(SHAPE)) < TOLERANCE


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("shape", [SHAPE, (2, 4, 5)])
def test_dice_gradcheck(rng, reduction, from_logits, shape):
    logits = 2 * rng.standard_normal(shape) if from_logits else rng.uniform(0.05, 0.95, shape)
    loss = losses.DiceLoss(smooth=0.5, from_logits=from_logits, reduction=reduction)
    assert check_loss(loss, logits, binary(rng, shape)) < TOLERANCE


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_weight", [False, True])
def test_cross_entropy_gradcheck(rng, reduction, with_weight):
    weight = rng.uniform(0.2, 2.0, 3) if with_weight else None
    loss = losses.CrossEntropyLoss(weight, reduction)
    assert check_loss(loss, 2 * rng.standard_normal(SHAPE), class_targets(rng, ignored=3)) < TOLERANCE


def test_bce_dice_gradcheck(rng):
    loss = losses.BCEDiceLoss(bce_weight=0.3, dice_weight=0.7, pos_weight=numpy.array([2.0, 1.0, 0.5])[:, None, None])
    assert check_loss(loss, rng.standard_normal(SHAPE), binary(rng)) < TOLERANCE


# ------------------------------------------------------------------ PyTorch parity
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_matches_torch(torch, rng, dtype, reduction, with_pos_weight):
    logits = (3 * rng.standard_normal(SHAPE)).astype(dtype)
    target = rng.random(SHAPE).astype(dtype)
    pos_weight = rng.uniform(0.5, 3.0, (3, 1, 1)).astype(dtype) if with_pos_weight else None
    upstream = rng.standard_normal(SHAPE).astype(dtype)
    torch_loss = torch.nn.BCEWithLogitsLoss(
        reduction=reduction, pos_weight=None if pos_weight is None else torch.tensor(pos_weight))
    expected = torch_value_and_gradient(torch, lambda x: torch_loss(x, torch.tensor(target)), logits, upstream)
    loss = losses.BCEWithLogitsLoss(reduction, pos_weight=pos_weight)
    value, gradient = minidl_value_and_gradient(loss, logits, target, upstream)
    assert gradient.dtype == dtype and gradient.shape == logits.shape
    assert_matches(value, expected[0], dtype, "value")
    assert_matches(gradient, expected[1], dtype, "gradient")


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_dice_matches_torch(torch, rng, dtype, reduction, from_logits):
    logits = (2 * rng.standard_normal(SHAPE) if from_logits else rng.uniform(0, 1, SHAPE)).astype(dtype)
    target = binary(rng).astype(dtype)
    upstream = rng.standard_normal(SHAPE[:2]).astype(dtype)
    expected = torch_value_and_gradient(torch, torch_dice(torch, 1.0, from_logits, reduction, target), logits, upstream)
    loss = losses.DiceLoss(from_logits=from_logits, reduction=reduction)
    value, gradient = minidl_value_and_gradient(loss, logits, target, upstream)
    assert gradient.dtype == dtype
    assert_matches(value, expected[0], dtype, "value")
    assert_matches(gradient, expected[1], dtype, "gradient")


@pytest.mark.parametrize("bce_weight, dice_weight, with_pos_weight, smooth, upstream",
                         [(1.0, 1.0, False, 1.0, None), (0.3, 0.7, True, 0.5, None), (2.0, 0.5, True, 1.0, -1.5)])
def test_bce_dice_matches_torch(torch, rng, bce_weight, dice_weight, with_pos_weight, smooth, upstream):
    """BCEDiceLoss against torch's BCE-with-logits plus the torch-ops soft Dice, not against minidl's own terms."""
    logits, target = 3 * rng.standard_normal(SHAPE), binary(rng)
    pos_weight = rng.uniform(0.5, 3.0, (3, 1, 1)) if with_pos_weight else None
    torch_pos_weight = None if pos_weight is None else torch.tensor(pos_weight)
    dice = torch_dice(torch, smooth, True, "mean", target)

    x = torch.tensor(logits, requires_grad=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, torch.tensor(target), pos_weight=torch_pos_weight)
    expected = bce_weight * bce + dice_weight * dice(x)
    expected.backward(torch.tensor(1.0 if upstream is None else upstream, dtype=torch.float64))
    loss = losses.BCEDiceLoss(bce_weight=bce_weight, dice_weight=dice_weight, pos_weight=pos_weight, smooth=smooth)
    value = loss(logits, target)
    gradient = loss.backward(upstream)
    assert gradient.dtype == numpy.float64 and gradient.shape == logits.shape
    assert_matches(value, expected.item(), numpy.float64, "value")
    assert_matches(gradient, x.grad.numpy(), numpy.float64, "gradient")


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_weight", [False, True])
def test_cross_entropy_matches_torch(torch, rng, dtype, reduction, with_weight):
    logits = (3 * rng.standard_normal(SHAPE)).astype(dtype)
    target = class_targets(rng, ignored=4)
    weight = rng.uniform(0.2, 2.0, 3).astype(dtype) if with_weight else None
    upstream = rng.standard_normal(target.shape).astype(dtype)
    torch_weight = None if weight is None else torch.tensor(weight)
    expected = torch_value_and_gradient(torch, lambda x: torch.nn.functional.cross_entropy(
        x, torch.tensor(target), weight=torch_weight, reduction=reduction), logits, upstream)
    loss = losses.CrossEntropyLoss(weight, reduction)
    value, gradient = minidl_value_and_gradient(loss, logits, target, upstream)
    assert gradient.dtype == dtype
    assert_matches(value, expected[0], dtype, "value")
    assert_matches(gradient, expected[1], dtype, "gradient")


def test_class_weights_may_be_lists(rng):
    logits, target = rng.standard_normal(SHAPE), class_targets(rng, ignored=0)
    weight = [0.5, 2.0, 1.25]
    from_list = losses.CrossEntropyLoss(weight)(logits, target)
    assert from_list == pytest.approx(losses.CrossEntropyLoss(numpy.array(weight))(logits, target), rel=1e-15)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: weight must be real numbers, got dtype <U1"):
        losses.CrossEntropyLoss(["a", "b", "c"])


def test_class_and_positive_weights_may_be_torch_tensors(torch, rng):
    logits, target = rng.standard_normal(SHAPE), class_targets(rng, ignored=0)
    weight = rng.uniform(0.5, 2.0, 3)
    from_torch = losses.CrossEntropyLoss(torch.tensor(weight))(logits, target)
    assert from_torch == pytest.approx(losses.CrossEntropyLoss(weight)(logits, target), rel=1e-15)
    probabilities = rng.uniform(0, 1, SHAPE)
    from_torch = losses.BCEWithLogitsLoss(pos_weight=torch.tensor(weight)[:, None, None])(logits, probabilities)
    expected = losses.BCEWithLogitsLoss(pos_weight=weight[:, None, None])(logits, probabilities)
    assert from_torch == pytest.approx(expected, rel=1e-15)


def test_cross_entropy_two_dimensional_logits_match_torch(torch, rng):
    logits, target = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    expected = torch_value_and_gradient(
        torch, lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(target)), logits, None)
    value, gradient = minidl_value_and_gradient(losses.CrossEntropyLoss(), logits, target, None)
    assert_matches(value, expected[0], numpy.float64, "value")
    assert_matches(gradient, expected[1], numpy.float64, "gradient")


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient_as_torch(torch, rng):
    logits, target = rng.standard_normal((2, 3, 2, 2)), numpy.full((2, 2, 2), -100)
    expected_value, expected_gradient = torch_value_and_gradient(
        torch, lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(target)), logits, None)
    loss = losses.CrossEntropyLoss()
    assert numpy.isnan(loss(logits, target)) and numpy.isnan(expected_value)
    numpy.testing.assert_array_equal(loss.backward(), expected_gradient)


# ------------------------------------------------------------------ extreme logits
def extreme_logits(rng, magnitude, dtype):
    return (magnitude * rng.choice([-1.0, 1.0], SHAPE) * rng.uniform(0.5, 1.0, SHAPE)).astype(dtype)


@pytest.mark.parametrize("magnitude", [100.0, 1000.0])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_extreme_logits_are_finite_and_match_torch(torch, rng, magnitude, dtype):
    logits = extreme_logits(rng, magnitude, dtype)
    soft, hard = rng.random(SHAPE).astype(dtype), binary(rng).astype(dtype)
    pos_weight = numpy.array([3.0, 1.0, 0.5], dtype)[:, None, None]
    classes = class_targets(rng)
    cases = [
        (losses.BCEWithLogitsLoss(), soft, lambda x: torch.nn.functional.binary_cross_entropy_with_logits(
            x, torch.tensor(soft))),
        (losses.BCEWithLogitsLoss(pos_weight=pos_weight), hard,
         lambda x: torch.nn.functional.binary_cross_entropy_with_logits(
             x, torch.tensor(hard), pos_weight=torch.tensor(pos_weight))),
        (losses.DiceLoss(), hard, torch_dice(torch, 1.0, True, "mean", hard)),
        (losses.CrossEntropyLoss(), classes, lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(classes))),
    ]
    for loss, target, torch_function in cases:
        expected = torch_value_and_gradient(torch, torch_function, logits, None)
        value, gradient = minidl_value_and_gradient(loss, logits, target, None)
        assert_matches(value, expected[0], dtype, f"{loss!r} value")
        assert_matches(gradient, expected[1], dtype, f"{loss!r} gradient")


# ------------------------------------------------------------------ objects, dtypes, combining
def test_values_are_floats_and_none_is_an_array_of_the_logits_dtype(rng):
    logits, target = rng.standard_normal(SHAPE).astype(numpy.float32), binary(rng)
    assert type(losses.BCEWithLogitsLoss()(logits, target)) is float
    assert type(losses.DiceLoss()(logits, target)) is float
    assert type(losses.CrossEntropyLoss()(logits, class_targets(rng))) is float
    per_element = losses.BCEWithLogitsLoss("none")(logits, target)
    assert per_element.shape == SHAPE and per_element.dtype == numpy.float32
    assert losses.DiceLoss(reduction="none")(logits, target).shape == SHAPE[:2]
    assert losses.CrossEntropyLoss(reduction="none")(logits, class_targets(rng)).shape == (2, 4, 5)


def test_losses_combine_by_adding_values_and_gradients(rng):
    logits, target = rng.standard_normal(SHAPE), binary(rng)
    bce, dice = losses.BCEWithLogitsLoss(), losses.DiceLoss()
    total = 0.3 * bce(logits, target) + 0.7 * dice(logits, target)
    gradient = 0.3 * bce.backward() + 0.7 * dice.backward()
    combined = losses.BCEDiceLoss(bce_weight=0.3, dice_weight=0.7)
    assert combined(logits, target) == pytest.approx(total, rel=1e-12)
    assert combined.terms["bce"] == pytest.approx(bce(logits, target), rel=1e-12)
    numpy.testing.assert_allclose(combined.backward(), gradient, rtol=1e-12)


def test_dice_on_three_dimensional_input_equals_one_channel(rng):
    logits, target = rng.standard_normal((2, 4, 5)), binary(rng, (2, 4, 5))
    flat, channel = losses.DiceLoss(), losses.DiceLoss()
    assert flat(logits, target) == pytest.approx(channel(logits[:, None], target[:, None]), rel=1e-12)
    numpy.testing.assert_allclose(flat.backward(), channel.backward()[:, 0], rtol=1e-12)


def test_bce_accepts_integer_and_bool_targets(rng):
    logits, target = rng.standard_normal(SHAPE), binary(rng)
    expected = losses.BCEWithLogitsLoss()(logits, target)
    assert losses.BCEWithLogitsLoss()(logits, target.astype(bool)) == pytest.approx(expected, rel=1e-12)
    assert losses.BCEWithLogitsLoss()(logits, target.astype(numpy.uint8)) == pytest.approx(expected, rel=1e-12)


def test_backward_needs_a_forward_outside_no_grad(rng):
    logits, target = rng.standard_normal(SHAPE), binary(rng)
    loss = losses.BCEWithLogitsLoss()
    with pytest.raises(RuntimeError, match="BCEWithLogitsLoss.backward: no forward"):
        loss.backward()
    with minidl.no_grad():
        loss(logits, target)
    with pytest.raises(RuntimeError, match="no forward"):
        loss.backward()
    loss(logits, target)
    loss.backward()
    with pytest.raises(RuntimeError, match="no forward"):
        loss.backward()


def test_upstream_gradient_shape_is_checked(rng):
    loss = losses.CrossEntropyLoss(reduction="none")
    loss(rng.standard_normal(SHAPE), class_targets(rng))
    with pytest.raises(ValueError, match=r"upstream gradient has shape \(2, 4\), the value had shape \(2, 4, 5\)"):
        loss.backward(numpy.ones((2, 4)))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make", [losses.BCEWithLogitsLoss, losses.DiceLoss])
def test_binary_losses_reject_bad_targets(rng, make):
    name, logits = make.__name__, rng.standard_normal(SHAPE)
    with pytest.raises(ValueError, match=rf"{name}: target shape \(2, 3, 4, 4\) differs from logits shape"):
        make()(logits, binary(rng, (2, 3, 4, 4)))
    with pytest.raises(ValueError, match=rf"{name}: target values must lie in \[0, 1\], found values in \[0, 2\]"):
        make()(logits, 2 * binary(rng))
    with pytest.raises(ValueError, match=rf"{name}: target values must lie in \[0, 1\], found values in \[-0.5, 1\]"):
        make()(logits, numpy.where(binary(rng) > 0, 1.0, -0.5))
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point logits"):
        make()(logits.astype(numpy.int64), binary(rng))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of .* got 'average'"):
        make(reduction="average")


def test_bce_rejects_pos_weight_that_does_not_broadcast(rng):
    loss = losses.BCEWithLogitsLoss(pos_weight=numpy.ones((4, 1, 1)))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4, 1, 1\) does not broadcast to logits of shape"):
        loss(rng.standard_normal(SHAPE), binary(rng))


def test_dice_rejects_bad_rank_probabilities_and_smooth(rng):
    with pytest.raises(ValueError, match=r"DiceLoss: expected \(N, C, H, W\) or \(N, H, W\) .* shape \(4, 5\)"):
        losses.DiceLoss()(rng.standard_normal((4, 5)), binary(rng, (4, 5)))
    with pytest.raises(ValueError, match=r"DiceLoss: probability \(from_logits=False\) values must lie in \[0, 1\]"):
        losses.DiceLoss(from_logits=False)(rng.standard_normal(SHAPE), binary(rng))
    with pytest.raises(ValueError, match="DiceLoss: smooth must be a non-negative number, got -1"):
        losses.DiceLoss(smooth=-1)


def test_cross_entropy_rejects_bad_targets(rng):
    logits = rng.standard_normal(SHAPE)
    target = class_targets(rng)
    with pytest.raises(TypeError, match="CrossEntropyLoss: target must be an integer array .* float64"):
        losses.CrossEntropyLoss()(logits, target.astype(numpy.float64))
    too_large, negative = target.copy(), target.copy()
    too_large[1, 2, 3], negative[0, 0, 1] = 3, -1
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target value 3 is outside \[0, 3\) for logits of shape"):
        losses.CrossEntropyLoss()(logits, too_large)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target value -1 is outside \[0, 3\)"):
        losses.CrossEntropyLoss()(logits, negative)
    with pytest.raises(ValueError, match=r"target of shape \(2, 1, 4, 5\) does not match logits of shape \(2, 3, 4"):
        losses.CrossEntropyLoss()(logits, target[:, None])
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected logits \(N, C, \.\.\.\), got .* \(5,\)"):
        losses.CrossEntropyLoss()(rng.standard_normal(5), numpy.zeros((), numpy.int64))
    with pytest.raises(ValueError, match=r"weight of shape \(4,\) does not match 3 classes"):
        losses.CrossEntropyLoss(weight=numpy.ones(4))(logits, target)
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be one of"):
        losses.CrossEntropyLoss(reduction="mean ")


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_losses_on_gpu_match_cpu(rng):
    cupy = gpu_or_skip()
    logits, target, classes = rng.standard_normal(SHAPE).astype(numpy.float32), binary(rng), class_targets(rng)
    pos_weight = numpy.array([2.0, 1.0, 0.5])[:, None, None]
    for make, loss_target in [(lambda: losses.BCEWithLogitsLoss(pos_weight=pos_weight), target),
                              (losses.DiceLoss, target),
                              (lambda: losses.CrossEntropyLoss(weight=numpy.array([1.0, 2.0, 0.5])), classes)]:
        cpu, gpu = make(), make()
        cpu_value = cpu(logits, loss_target)
        gpu_value = gpu(cupy.asarray(logits), cupy.asarray(loss_target))
        gpu_gradient = gpu.backward()
        assert isinstance(gpu_gradient, cupy.ndarray) and gpu_gradient.dtype == numpy.float32
        assert gpu_value == pytest.approx(cpu_value, rel=1e-5)
        numpy.testing.assert_allclose(gpu_gradient.get(), cpu.backward(), rtol=1e-5, atol=1e-7)
