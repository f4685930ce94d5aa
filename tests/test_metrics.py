"""Metrics: Dice, IoU and pixel accuracy against counts over sets of pixels, the empty cases, bad input."""
import itertools

import numpy
import pytest
from helpers import gpu_or_skip

from minidl import metrics


def pixel_sets(prediction, target, threshold=0.5):
    """Per image, the sets of (channel, row, column) predicted and truly foreground, and the pixel count."""
    for image_prediction, image_target in zip(prediction, target):
        positions = list(itertools.product(*map(range, image_prediction.shape)))
        predicted = {p for p in positions if image_prediction[p] >= threshold}
        actual = {p for p in positions if image_target[p] >= 0.5}
        yield predicted, actual, positions


def expected_scores(prediction, target, threshold=0.5):
    dice, iou, accuracy = [], [], []
    for predicted, actual, positions in pixel_sets(prediction, target, threshold):
        union = predicted | actual
        dice.append(1.0 if not union else 2 * len(predicted & actual) / (len(predicted) + len(actual)))
        iou.append(1.0 if not union else len(predicted & actual) / len(union))
        accuracy.append(sum((p in predicted) == (p in actual) for p in positions) / len(positions))
    return numpy.array(dice), numpy.array(iou), numpy.array(accuracy)


def test_hand_computed_case():
    # image 0: predicted {(0,0), (1,0)}, truth {(0,0), (1,1)}; image 1: both empty
    prediction = numpy.array([[[[0.9, 0.2], [0.5, 0.1]]], [[[0.1, 0.3], [0.0, 0.49]]]])
    target = numpy.array([[[[1, 0], [0, 1]]], [[[0, 0], [0, 0]]]], dtype=numpy.uint8)
    numpy.testing.assert_allclose(metrics.dice_per_image(prediction, target), [2 * 1 / 4, 1.0])
    numpy.testing.assert_allclose(metrics.iou_per_image(prediction, target), [1 / 3, 1.0])
    numpy.testing.assert_allclose(metrics.pixel_accuracy_per_image(prediction, target), [2 / 4, 1.0])
    assert metrics.dice_score(prediction, target) == pytest.approx((0.5 + 1.0) / 2)
    assert metrics.iou_score(prediction, target) == pytest.approx((1 / 3 + 1.0) / 2)
    assert metrics.pixel_accuracy(prediction, target) == pytest.approx(6 / 8)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_random_cases_match_set_counts(rng, threshold):
    prediction = rng.random((4, 2, 5, 6))
    target = (rng.random((4, 2, 5, 6)) > 0.6).astype(numpy.float32)
    target[1] = 0
    prediction[1] = 0.0  # an empty prediction on an empty mask
    prediction[2] = 0.0  # an empty prediction on a non-empty mask
    dice, iou, accuracy = expected_scores(prediction, target, threshold)
    assert iou[1] == 1.0 and dice[2] == 0.0
    numpy.testing.assert_allclose(metrics.dice_per_image(prediction, target, threshold), dice, rtol=1e-15)
    numpy.testing.assert_allclose(metrics.iou_per_image(prediction, target, threshold), iou, rtol=1e-15)
    numpy.testing.assert_allclose(metrics.pixel_accuracy_per_image(prediction, target, threshold), accuracy)
    assert metrics.dice_score(prediction, target, threshold) == pytest.approx(dice.mean(), rel=1e-15)
    assert metrics.iou_score(prediction, target, threshold) == pytest.approx(iou.mean(), rel=1e-15)
    assert metrics.pixel_accuracy(prediction, target, threshold) == pytest.approx(accuracy.mean(), rel=1e-15)


def test_logits_give_the_scores_of_their_sigmoid(rng):
    logits = 3 * rng.standard_normal((3, 1, 4, 4)).astype(numpy.float32)
    target = rng.random((3, 1, 4, 4)) > 0.5
    probabilities = 1 / (1 + numpy.exp(-logits.astype(numpy.float64)))
    expected_dice, expected_iou, _ = expected_scores(probabilities, target)
    numpy.testing.assert_allclose(metrics.dice_per_image(logits, target, from_logits=True), expected_dice)
    numpy.testing.assert_allclose(metrics.iou_per_image(logits, target, from_logits=True), expected_iou)


def test_types():
    prediction, target = numpy.full((2, 3, 3), 0.7, numpy.float32), numpy.ones((2, 3, 3))
    assert type(metrics.dice_score(prediction, target)) is float
    per_image = metrics.iou_per_image(prediction, target)
    assert per_image.shape == (2,) and per_image.dtype == numpy.float64
    numpy.testing.assert_array_equal(per_image, [1.0, 1.0])


def test_bad_input(rng):
    prediction, target = rng.random((2, 1, 4, 4)), numpy.ones((2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"dice_score: expected prediction and target of one shape .* "
                                         r"prediction \(2, 1, 4, 4\) and target \(2, 4, 4\)"):
        metrics.dice_score(prediction, target[:, 0])
    with pytest.raises(ValueError, match=r"iou_score: prediction values must lie in \[0, 1\], found values "
                                         r"in \[-1\.9.*from_logits=True"):
        metrics.iou_score(prediction - 2, target)
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\], found values in \[0, 255\]"):
        metrics.pixel_accuracy(prediction, numpy.where(prediction > 0.5, 255, 0))
    with pytest.raises(TypeError, match="dice_score: expected a floating-point prediction, got dtype int64"):
        metrics.dice_score(target.astype(numpy.int64), target)
    with pytest.raises(ValueError, match="threshold must lie in"):
        metrics.dice_score(prediction, target, threshold=1.5)


@pytest.mark.gpu
def test_metrics_on_gpu_match_cpu(rng):
    cupy = gpu_or_skip()
    prediction, target = rng.random((3, 1, 5, 5)), rng.random((3, 1, 5, 5)) > 0.5
    per_image = metrics.dice_per_image(cupy.asarray(prediction), cupy.asarray(target))
    assert isinstance(per_image, cupy.ndarray)
    numpy.testing.assert_allclose(per_image.get(), metrics.dice_per_image(prediction, target))
    assert metrics.iou_score(cupy.asarray(prediction), cupy.asarray(target)) == pytest.approx(
        metrics.iou_score(prediction, target))
