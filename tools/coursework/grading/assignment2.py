"""Held-out cases of assignment 2: im2col and col2im, conv2d, the transposed convolution.

Geometries cover strides, paddings and dilations per axis, non-square kernels, odd sizes, a single
window, and float32 as well as float64.
"""
import numpy

import minidl
import minidl.functional.im2col as windows

from .cases import Case
from .harness import layer_case, layer_inputs, normal
from .measures import gradient_errors

F32, F64 = numpy.float32, numpy.float64


def grid(size, kernel, stride, padding, dilation):
    """(Ho, Wo) of the sliding windows (the grader's own formula)."""
    return tuple((size[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(2))


def im2col_case(name, shape, kernel, stride, padding, dilation, dtype=F64, pad_value=0.0):
    """im2col of x, and col2im of random columns; central differences check that col2im is im2col's adjoint."""
    geometry = (kernel, stride, padding, dilation)

    def draw(rng):
        columns = shape[:2] + kernel + grid(shape[2:], *geometry)
        return {"x": normal(rng, shape, dtype), "columns gradient": normal(rng, columns, dtype)}

    def run(inputs):
        columns = windows.im2col(inputs["x"].copy(), kernel, stride, padding, dilation, pad_value)
        added = windows.col2im(inputs["columns gradient"].copy(), shape, stride, padding, dilation)
        return {"columns": columns, "col2im of the columns gradient": added}

    def gradients(inputs, actual):
        x, weights = inputs["x"], inputs["columns gradient"]

        def scalar():
            return float(numpy.sum(windows.im2col(x.copy(), kernel, stride, padding, dilation, pad_value) * weights))
        added = actual.get("col2im of the columns gradient")
        return gradient_errors(scalar, [("col2im of the columns gradient", x, added)])

    def equivalent(torch, inputs):
        functional, flat = torch.nn.functional, (shape[0], shape[1] * kernel[0] * kernel[1], -1)
        columns = functional.unfold(torch.tensor(inputs["x"]), kernel, dilation, padding, stride)
        added = functional.fold(torch.tensor(inputs["columns gradient"]).reshape(flat), shape[2:], kernel, dilation,
                                padding, stride)
        return {"columns": columns.reshape(inputs["columns gradient"].shape).numpy(),
                "col2im of the columns gradient": added.numpy()}

    plain = pad_value == 0.0
    return Case(name, draw, run, dtype, gradients if plain and dtype == F64 else None, equivalent if plain else None)


def im2col_cases():
    return [
        im2col_case("k3 s1 p1, (2, 3, 5, 6)", (2, 3, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
        im2col_case("k(2,3) s(2,1) p(1,0) d(1,2), odd (1, 2, 7, 9)", (1, 2, 7, 9), (2, 3), (2, 1), (1, 0), (1, 2)),
        im2col_case("k3 s2 p2 d2, float32 (2, 1, 8, 7)", (2, 1, 8, 7), (3, 3), (2, 2), (2, 2), (2, 2), F32),
        im2col_case("k1 s3, (1, 2, 7, 5)", (1, 2, 7, 5), (1, 1), (3, 3), (0, 0), (1, 1)),
        im2col_case("k(4,2) s(3,2) p1, pad_value -inf, (1, 2, 9, 6)", (1, 2, 9, 6), (4, 2), (3, 2), (1, 1), (1, 1),
                    pad_value=-numpy.inf),
        im2col_case("one window k(5,4) p(1,0), (1, 1, 3, 4)", (1, 1, 3, 4), (5, 4), (1, 1), (1, 0), (1, 1)),
    ]


def conv_case(name, shape, out_channels, kernel, stride=1, padding=0, dilation=1, bias=True, dtype=F64):
    def build():
        return minidl.nn.Conv2d(shape[1], out_channels, kernel, stride, padding, dilation, bias=bias)

    def equivalent(torch, x, parameters, inputs):
        return torch.nn.functional.conv2d(x, parameters["weight"], parameters.get("bias"), stride, padding, dilation)
    return layer_case(name, build, lambda rng: layer_inputs(build, normal(rng, shape, dtype), rng), dtype,
                      equivalent=equivalent)


def conv2d_cases():
    return [
        conv_case("3->4 k3 s1 p1, (2, 3, 6, 7)", (2, 3, 6, 7), 4, 3, padding=1),
        conv_case("2->3 k(3,5) s(2,1) p(1,2) d2, no bias, (1, 2, 11, 13)", (1, 2, 11, 13), 3, (3, 5), (2, 1), (1, 2),
                  2, bias=False),
        conv_case("4->2 k1 s3, (3, 4, 7, 5)", (3, 4, 7, 5), 2, 1, stride=3),
        conv_case("3->5 k(2,3) s(1,2) d(2,1), float32 (2, 3, 9, 8)", (2, 3, 9, 8), 5, (2, 3), (1, 2), dilation=(2, 1),
                  dtype=F32),
        conv_case("1->2 k4 s3 p2, odd (2, 1, 5, 5)", (2, 1, 5, 5), 2, 4, 3, 2),
    ]


def conv_transpose_case(name, shape, out_channels, kernel, stride=1, padding=0, output_padding=0, dilation=1,
                        bias=True, dtype=F64):
    def build():
        return minidl.nn.ConvTranspose2d(shape[1], out_channels, kernel, stride, padding, output_padding, dilation,
                                         bias=bias)

    def equivalent(torch, x, parameters, inputs):
        return torch.nn.functional.conv_transpose2d(x, parameters["weight"], parameters.get("bias"), stride,
                                                    padding, output_padding, 1, dilation)
    return layer_case(name, build, lambda rng: layer_inputs(build, normal(rng, shape, dtype), rng), dtype,
                      equivalent=equivalent)


def conv_transpose2d_cases():
    return [
        conv_transpose_case("3->2 k3 s2 p1 op1, (2, 3, 4, 5)", (2, 3, 4, 5), 2, 3, 2, 1, 1),
        conv_transpose_case("2->3 k(3,2) s(1,2) op(0,1) d2, no bias, (1, 2, 5, 4)", (1, 2, 5, 4), 3, (3, 2), (1, 2),
                            0, (0, 1), 2, bias=False),
        conv_transpose_case("4->2 k2 s2, float32 (2, 4, 3, 3)", (2, 4, 3, 3), 2, 2, 2, dtype=F32),
        conv_transpose_case("2->2 k(4,3) s(3,2) p(2,1) op(2,1), (1, 2, 4, 5)", (1, 2, 4, 5), 2, (4, 3), (3, 2),
                            (2, 1), (2, 1)),
        conv_transpose_case("1->3 k1 s1, (2, 1, 3, 2)", (2, 1, 3, 2), 3, 1),
    ]
