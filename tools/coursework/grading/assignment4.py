"""Held-out cases of assignment 4: the Dice and cross-entropy losses, SGD and Adam, SegNetSmall's backward.

Losses cover every reduction, smooth values, probabilities as inputs, class weights and ignore_index (all
targets ignored too). Optimizers run several steps with momentum, dampening, Nesterov, weight decay,
AMSGrad and a changing learning rate. SegNetSmall runs tiny (init_features 2) in both upsample modes.
"""
import math

import numpy

import minidl
import models.segnet_small

from .cases import Case
from .harness import layer_gradients, loss_case, normal, optimizer_case, run_layer

F32, F64 = numpy.float32, numpy.float64


def dice(smooth=1.0, from_logits=True, reduction="mean"):
    return lambda: minidl.losses.DiceLoss(smooth, from_logits, reduction)


def dice_inputs(shape, dtype=F64, hard=False, probabilities=False, upstream=None):
    def draw(rng):
        target = (rng.random(shape) < 0.4) if hard else rng.random(shape)
        logits = rng.uniform(0.05, 0.95, shape) if probabilities else normal(rng, shape, scale=2.0)
        return {"logits": logits.astype(dtype), "target": target.astype(dtype),
                "upstream": None if upstream is None else normal(rng, upstream, dtype)}
    return draw


def dice_cases():
    return [
        loss_case("mean, smooth 1, soft targets, (2, 3, 4, 5)", dice(), dice_inputs((2, 3, 4, 5))),
        loss_case("sum, smooth 0.5, binary targets, (2, 2, 3, 3)", dice(0.5, reduction="sum"),
                  dice_inputs((2, 2, 3, 3), hard=True)),
        loss_case("none with an upstream gradient, (3, 2, 4, 4)", dice(reduction="none"),
                  dice_inputs((3, 2, 4, 4), upstream=(3, 2))),
        loss_case("probabilities (from_logits=False), smooth 1e-3, (2, 1, 5, 5)", dice(1e-3, from_logits=False),
                  dice_inputs((2, 1, 5, 5), probabilities=True)),
        loss_case("(N, H, W) input, float32 (3, 4, 6)", dice(), dice_inputs((3, 4, 6), F32), F32),
        loss_case("smooth 0, (2, 2, 3, 4)", dice(0.0), dice_inputs((2, 2, 3, 4))),
    ]


def cross_entropy(weight=None, reduction="mean", ignore_index=-100):
    return lambda: minidl.losses.CrossEntropyLoss(weight, reduction, ignore_index)


def cross_entropy_equivalent(weight=None, reduction="mean", ignore_index=-100):
    def forward(torch, logits, target):
        weights = None if weight is None else torch.as_tensor(weight, dtype=logits.dtype)
        return torch.nn.functional.cross_entropy(logits, target, weights, ignore_index=ignore_index,
                                                 reduction=reduction)
    return forward


def cross_entropy_inputs(shape, dtype=F64, ignore_index=None, ignored=0.0, upstream=False):
    """Logits ``shape`` (N, C, ...), targets (N, ...) with about ``ignored`` of them ``ignore_index``."""
    def draw(rng):
        target_shape = (shape[0],) + shape[2:]
        target = rng.integers(0, shape[1], target_shape)
        target[rng.random(target_shape) < ignored] = ignore_index if ignore_index is not None else -100
        return {"logits": normal(rng, shape, dtype, 2.0), "target": target,
                "upstream": normal(rng, target_shape, dtype) if upstream else None}
    return draw


def cross_entropy_case(name, shape, dtype=F64, weight=None, reduction="mean", ignore_index=-100, ignored=0.0,
                       numeric=True):
    return loss_case(name, cross_entropy(weight, reduction, ignore_index),
                     cross_entropy_inputs(shape, dtype, ignore_index, ignored, reduction == "none"), dtype,
                     cross_entropy_equivalent(weight, reduction, ignore_index), numeric)


def cross_entropy_cases():
    weight = numpy.array([0.2, 1.0, 2.5, 0.7])
    return [
        cross_entropy_case("mean, (4, 3)", (4, 3)),
        cross_entropy_case("class weights, mean, (2, 4, 3, 5)", (2, 4, 3, 5), weight=weight),
        cross_entropy_case("class weights, ignore_index -1, sum, (3, 4, 4)", (3, 4, 4), weight=weight,
                           reduction="sum", ignore_index=-1, ignored=0.3),
        cross_entropy_case("none with an upstream gradient, ignore_index 255, (2, 3, 2, 3)", (2, 3, 2, 3),
                           reduction="none", ignore_index=255, ignored=0.3),
        cross_entropy_case("ignore_index -100, float32 (2, 5, 4, 4)", (2, 5, 4, 4), F32, ignored=0.2),
        cross_entropy_case("every target ignored: mean NaN, gradient 0, (2, 3, 2, 2)", (2, 3, 2, 2), ignored=1.0,
                           numeric=False),
    ]


LEARNING_RATES = (0.1, 0.1, 0.05, 0.05)


def sgd_case(name, dtype=F64, lrs=LEARNING_RATES, **settings):
    return optimizer_case(name, lambda parameters, lr: minidl.optim.SGD(parameters, lr, **settings),
                          lambda optim, parameters, lr: optim.SGD(parameters, lr, **settings), lrs, dtype)


def sgd_cases():
    return [
        sgd_case("plain, 4 steps"),
        sgd_case("momentum 0.9", momentum=0.9),
        sgd_case("momentum 0.9, dampening 0.5", momentum=0.9, dampening=0.5),
        sgd_case("Nesterov, momentum 0.9", momentum=0.9, nesterov=True),
        sgd_case("momentum 0.8, weight decay 0.01, learning rate 0.3 to 0.01", lrs=(0.3, 0.1, 0.03, 0.01),
                 momentum=0.8, weight_decay=0.01),
        sgd_case("Nesterov, weight decay 0.1, float32", F32, momentum=0.5, nesterov=True, weight_decay=0.1),
    ]


def adam_case(name, dtype=F64, lrs=(0.01,) * 5, **settings):
    return optimizer_case(name, lambda parameters, lr: minidl.optim.Adam(parameters, lr, **settings),
                          lambda optim, parameters, lr: optim.Adam(parameters, lr, **settings), lrs, dtype,
                          shrinking=True)


def adam_cases():
    return [
        adam_case("defaults, 5 steps"),
        adam_case("AMSGrad", amsgrad=True),
        adam_case("weight decay 0.1", weight_decay=0.1),
        adam_case("betas (0.5, 0.9), eps 1e-6, AMSGrad, weight decay 0.05", betas=(0.5, 0.9), eps=1e-6, amsgrad=True,
                  weight_decay=0.05),
        adam_case("AMSGrad, float32", F32, amsgrad=True),
        adam_case("learning rate 0.05 to 0.001", lrs=(0.05, 0.02, 0.01, 0.005, 0.001)),
    ]


def segnet(shape, upsample, classes):
    return lambda: models.segnet_small.SegNetSmall(shape[1], classes, init_features=2, upsample=upsample)


def he_inputs(build, shape, dtype):
    """x, He-scaled weights (so activations keep their size through the layers), small biases, a seed."""
    def draw(rng):
        parameters = {}
        for name, p in build().named_parameters():
            fan_in = math.prod(p.data.shape[1:])
            scale = math.sqrt(2.0 / fan_in) if p.data.ndim > 1 else 0.1
            parameters[name] = normal(rng, p.data.shape, dtype, scale)
        return {"x": normal(rng, shape, dtype), "parameters": parameters, "seed": int(rng.integers(2 ** 31))}
    return draw


def segnet_case(name, shape, upsample, classes=1, dtype=F64):
    build = segnet(shape, upsample, classes)
    return Case(name, he_inputs(build, shape, dtype), lambda inputs: run_layer(build, inputs), dtype,
                (lambda inputs, actual: layer_gradients(build, inputs, actual)) if dtype == F64 else None)


def segnet_backward_cases():
    return [
        segnet_case("bilinear decoder, (1, 1, 16, 16)", (1, 1, 16, 16), "bilinear"),
        segnet_case("unpooling decoder, 2 classes, odd (2, 2, 17, 19)", (2, 2, 17, 19), "unpool", 2),
        segnet_case("unpooling decoder, float32 (1, 1, 16, 16)", (1, 1, 16, 16), "unpool", dtype=F32),
        segnet_case("bilinear decoder, 3 classes, float32 (2, 1, 32, 16)", (2, 1, 32, 16), "bilinear", 3, F32),
    ]
