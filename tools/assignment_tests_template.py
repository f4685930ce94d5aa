"""Coursework: one gradient check per backward function (written by tools/make_assignment.py).

This file is the template: make_assignment.py copies it to tests/test_assignment.py
in the student copy and fills in CHECKED_NAMES.

Run ``python -m pytest tests/test_assignment.py -q``. Each test reports
"<name>: gradient of <tensor> missing (NotImplementedError)" while the
function is still blank, "<name>: gradient of <tensor> wrong (relative
error X)" while it is incorrect, and passes once it is right. The checks
are float64 central differences (minidl.gradcheck); see docs/gradient_checking.md.
"""
import numpy
import pytest

import minidl
from minidl.gradcheck import TOLERANCE, away_from_zero, check_loss, check_module, tie_free

CHECKED_NAMES = []  # make_assignment.py writes the names checkable in the copy here


def _rng():
    return numpy.random.default_rng(7)


def _module_check(build, *inputs, max_elements=None):
    def run():
        module = build()
        names = ["input"] + [name for name, _ in module.named_parameters()]
        return names, lambda: check_module(module, inputs if len(inputs) > 1 else inputs[0],
                                           max_elements=max_elements)
    return run


def _loss_check(build, logits, target):
    def run():
        return ["logits"], lambda: {"logits": check_loss(build(), logits, target)}
    return run


def _pooled(shape):
    """(pooled values, int64 indices) of a tie-free input through MaxPool2d(2)."""
    pooled, indices = minidl.nn.MaxPool2d(2, return_indices=True)(tie_free(shape, _rng()))
    return _rng().standard_normal(pooled.shape), indices


def _batch_norm(training):
    def build():
        layer = minidl.nn.BatchNorm2d(3)
        layer.running_mean[...] = 0.3
        layer.running_var[...] = 1.7
        return layer.train(training)
    return build


def _checks(name):
    """The gradient checks that exercise the backward function ``name``."""
    nn = minidl.nn
    if name == "conv2d":
        # the three forms conv2d_backward receives: direct (stride 2), the transposed twin (4 -> 2, stride 1),
        # and Winograd (64 -> 64 3x3 on the CPU; a sample of 30 entries a tensor keeps it quick)
        return [_module_check(lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), _rng().standard_normal((2, 2, 5, 5))),
                _module_check(lambda: nn.Conv2d(4, 2, 3, padding=1), _rng().standard_normal((2, 4, 5, 5))),
                _module_check(lambda: nn.Conv2d(64, 64, 3, padding=1), _rng().standard_normal((1, 64, 4, 4)),
                              max_elements=30)]
    if name == "conv_transpose2d":
        return [_module_check(lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
                              _rng().standard_normal((2, 2, 3, 3)))]
    if name == "relu":
        return [_module_check(nn.ReLU, away_from_zero((2, 3, 4), _rng()))]
    if name == "sigmoid":
        return [_module_check(nn.Sigmoid, 3 * _rng().standard_normal((2, 3, 4)))]
    if name == "max_pool2d":
        return [_module_check(lambda: nn.MaxPool2d(2), tie_free((2, 2, 6, 6), _rng())),
                _module_check(lambda: nn.MaxPool2d(3, stride=2, padding=1), tie_free((1, 2, 7, 5), _rng()))]
    if name == "max_unpool2d":
        return [_module_check(lambda: nn.MaxUnpool2d(2), *_pooled((2, 2, 6, 6)))]
    if name == "upsample_bilinear":
        return [_module_check(lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                              _rng().standard_normal((1, 2, 3, 4))),
                _module_check(lambda: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
                              _rng().standard_normal((1, 2, 3, 4)))]
    if name == "upsample_nearest":
        return [_module_check(lambda: nn.Upsample(scale_factor=2, mode="nearest"),
                              _rng().standard_normal((1, 2, 3, 4)))]
    if name == "batch_norm":
        return [_module_check(_batch_norm(True), _rng().standard_normal((4, 3, 3, 3))),
                _module_check(_batch_norm(False), _rng().standard_normal((4, 3, 3, 3)))]
    from minidl import losses
    logits = 2 * _rng().standard_normal((2, 3, 4, 4))
    if name == "bce":
        return [_loss_check(losses.BCEWithLogitsLoss, logits, _rng().uniform(0, 1, logits.shape))]
    if name == "dice":
        return [_loss_check(losses.DiceLoss, logits, (_rng().uniform(0, 1, logits.shape) > 0.5) * 1.0)]
    if name == "cross_entropy":
        return [_loss_check(losses.CrossEntropyLoss, logits, _rng().integers(0, 3, (2, 4, 4)))]
    raise ValueError(f"no gradient check for {name}")


@pytest.mark.parametrize("name", CHECKED_NAMES)
def test_backward(name):
    for check in _checks(name):
        tensors, run = check()
        try:
            errors, missing = run(), None
        except NotImplementedError as error:
            errors, missing = {}, str(error)
        if missing is not None:
            pytest.fail(f"{name}: gradient of {', '.join(tensors)} missing (NotImplementedError: {missing})",
                        pytrace=False)
        wrong = {tensor: error for tensor, error in errors.items() if not error < TOLERANCE}
        if wrong:
            pytest.fail("; ".join(f"{name}: gradient of {tensor} wrong (relative error {error:.3g})"
                                  for tensor, error in wrong.items()), pytrace=False)
