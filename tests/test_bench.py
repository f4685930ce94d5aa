"""The benchmark harness's arithmetic: the FLOP count behind its GFLOP/s columns."""
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
