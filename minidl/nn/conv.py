"""``Conv2d`` and ``ConvTranspose2d``: thin shells over the engine's ``conv`` ops (``minidl.functional.conv``)."""
from .. import init
from ..backend import check_same_device, device_of, to_device
from ..engines import get_engine, op
from ..functional import checks
from ..functional.windows import pair, transposed_output_size, window_output_size
from ..grad_mode import is_grad_enabled
from ..parameter import Parameter
from .module import Module


def _check_geometry(layer, kernel_size, stride, padding, dilation):
    if min(kernel_size) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{layer}: kernel_size, stride and dilation must be positive and padding non-negative, "
                         f"got kernel_size={kernel_size}, stride={stride}, padding={padding}, dilation={dilation}")


class _ConvBase(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, bias, weight_shape):
        super().__init__()
        layer = type(self).__name__
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{layer}: channel counts must be positive, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, f"{layer} kernel_size")
        self.stride = pair(stride, f"{layer} stride")
        self.padding = pair(padding, f"{layer} padding")
        self.dilation = pair(dilation, f"{layer} dilation")
        _check_geometry(layer, self.kernel_size, self.stride, self.padding, self.dilation)
        if bias is not None and bias not in (True, False):
            # Conv2d(in, out, k, stride, padding, dilation, 2) is groups=2 in PyTorch; minidl has no groups
            raise TypeError(f"{layer}: bias must be True or False, got {bias!r} (groups is not supported; "
                            "pass bias by keyword)")
        self.weight = Parameter(init.kaiming_uniform(weight_shape))
        self.bias = Parameter(init.default_bias(weight_shape, out_channels)) if bias else None

    def reset_parameters(self):
        """Re-draw weight and bias from PyTorch's default distributions (host float32, then cast back)."""
        device = device_of(self.weight.data)
        self.weight.data[...] = to_device(init.kaiming_uniform(self.weight.shape), device)
        if self.bias is not None:
            self.bias.data[...] = to_device(init.default_bias(self.weight.shape, self.out_channels), device)

    def _check_input(self, x):
        layer = type(self).__name__
        checks.check_input_4d(layer, x, self.in_channels)
        check_same_device(layer, x, self.weight.data)
        checks.check_dtype_matches(layer, x, self.weight.data)

    def _accumulate(self, dweight, dbias):
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvBase):
    """2-D convolution (cross-correlation). x (N, C_in, H, W) -> y (N, C_out, H_out, W_out).

    H_out = floor((H + 2*padding - dilation*(kernel-1) - 1) / stride) + 1, likewise W_out.
    Parameters: ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        kh, kw = pair(kernel_size, "Conv2d kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
                         (out_channels, in_channels, kh, kw))

    def output_grid(self, x):
        return tuple(window_output_size(x.shape[2 + a], self.kernel_size[a], self.stride[a], self.padding[a],
                                        self.dilation[a]) for a in range(2))

    def forward(self, x):
        self._check_input(x)
        grid = self.output_grid(x)
        if min(grid) < 1:
            raise ValueError(f"Conv2d: input of shape {checks.shape_text(x)} is smaller than the kernel "
                             f"{self.kernel_size} with dilation {self.dilation} after padding {self.padding}")
        bias = None if self.bias is None else self.bias.data
        y, cache = op("conv", "conv2d_forward")(x, self.weight.data, bias, self.stride, self.padding,
                                                self.dilation, for_backward=is_grad_enabled())
        self.keep((get_engine(), cache), y)
        return y

    def backward(self, dy):
        """dy (N, C_out, H_out, W_out) -> dx (N, C_in, H, W); adds dW and db into weight.grad and bias.grad."""
        engine, cache = self.take_cache(dy)
        dx, dweight, dbias = op("conv", "conv2d_backward", engine)(dy, cache)
        self._accumulate(dweight, dbias)
        return dx


class ConvTranspose2d(_ConvBase):
    """2-D transposed convolution, the adjoint of Conv2d. x (N, C_in, H, W) -> y (N, C_out, H_out, W_out).

    H_out = (H - 1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1, likewise W_out.
    Parameters: ``weight`` (C_in, C_out, kh, kw), ``bias`` (C_out,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 dilation=1, bias=True):
        kh, kw = pair(kernel_size, "ConvTranspose2d kernel_size")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
                         (in_channels, out_channels, kh, kw))
        self.output_padding = pair(output_padding, "ConvTranspose2d output_padding")
        for axis in range(2):
            limit = max(self.stride[axis], self.dilation[axis])
            if not 0 <= self.output_padding[axis] < limit:
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be non-negative and "
                                 f"smaller than max(stride, dilation) = {limit} along each axis")

    def output_size(self, x):
        return tuple(transposed_output_size(x.shape[2 + a], self.kernel_size[a], self.stride[a], self.padding[a],
                                            self.dilation[a], self.output_padding[a]) for a in range(2))

    def forward(self, x):
        self._check_input(x)
        size = self.output_size(x)
        if min(size) < 1:
            raise ValueError(f"ConvTranspose2d: input of shape {checks.shape_text(x)} gives a non-positive output "
                             f"size {size} with kernel {self.kernel_size}, stride {self.stride}, "
                             f"padding {self.padding}")
        bias = None if self.bias is None else self.bias.data
        y, cache = op("conv", "conv_transpose2d_forward")(x, self.weight.data, bias, self.stride, self.padding,
                                                          self.dilation, size)
        self.keep((get_engine(), cache), y)
        return y

    def backward(self, dy):
        """dy (N, C_out, H_out, W_out) -> dx (N, C_in, H, W), a conv of dy; adds dW and db into the grads."""
        engine, cache = self.take_cache(dy)
        dx, dweight, dbias = op("conv", "conv_transpose2d_backward", engine)(dy, cache)
        self._accumulate(dweight, dbias)
        return dx
