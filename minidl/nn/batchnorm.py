"""``BatchNorm2d``: a thin shell over the engine's ``batchnorm`` ops (``minidl.functional.batchnorm``)."""
import numpy

from ..backend import check_same_device
from ..functional import checks
from ..engines import get_engine, op
from ..parameter import Parameter
from .module import Module


class BatchNorm2d(Module):
    """Per-channel normalisation: x (N, C, H, W) -> y = weight * (x - mean) / sqrt(var + eps) + bias.

    Training uses the batch's mean and biased variance and moves the buffers
    ``running_mean`` and ``running_var`` (unbiased) towards them by ``momentum``
    (``None``: a cumulative average over ``num_batches_tracked`` batches), also
    inside ``no_grad()``; eval uses the running statistics. ``affine=False``: no
    ``weight``/``bias``; ``track_running_stats=False``: no buffers, batch statistics always.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be positive, got {num_features}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if affine:
            self.weight = Parameter(numpy.ones(num_features, numpy.float32))
            self.bias = Parameter(numpy.zeros(num_features, numpy.float32))
        else:
            self.weight, self.bias = None, None
        if track_running_stats:
            self.register_buffer("running_mean", numpy.zeros(num_features, numpy.float32))
            self.register_buffer("running_var", numpy.ones(num_features, numpy.float32))
            self.register_buffer("num_batches_tracked", numpy.zeros((), numpy.int64))
        else:
            self.running_mean, self.running_var, self.num_batches_tracked = None, None, None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def _check_input(self, x, use_batch_statistics):
        checks.check_input_4d("BatchNorm2d", x, self.num_features, "channels")
        reference = self.weight.data if self.affine else self.running_mean
        if reference is not None:
            check_same_device("BatchNorm2d", x, reference, "weight" if self.affine else "running_mean")
            checks.check_dtype_matches("BatchNorm2d", x, reference, "weight" if self.affine else "running_mean")
        if use_batch_statistics and x.size // x.shape[1] < 2:
            what = "an empty batch has no" if x.shape[0] == 0 else "expected more than 1 value per channel for"
            raise ValueError(f"BatchNorm2d: {what} batch statistics (training mode), "
                             f"got input of shape {checks.shape_text(x)}")

    def _momentum_for_this_batch(self):
        """Count the batch; the update weight: ``momentum``, or 1 / batches seen for the cumulative average."""
        self.num_batches_tracked += 1
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def forward(self, x):
        use_batch_statistics = self.training or not self.track_running_stats
        self._check_input(x, use_batch_statistics)
        momentum = 0.0
        if self.training and self.track_running_stats:
            momentum = self._momentum_for_this_batch()
        weight, bias = (self.weight.data, self.bias.data) if self.affine else (None, None)
        y, cache = op("batchnorm", "batch_norm2d_forward")(x, self.running_mean, self.running_var, weight, bias,
                                                           use_batch_statistics, momentum, self.eps)
        self.keep((get_engine(), cache), y)
        return y

    def backward(self, dy):
        """dy (N, C, H, W) -> dx (N, C, H, W); with affine, adds dweight and dbias into the grads."""
        engine, cache = self.take_cache(dy)
        dx, dweight, dbias = op("batchnorm", "batch_norm2d_backward", engine)(dy, cache)
        if self.affine:
            self.weight.grad += dweight
            self.bias.grad += dbias
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")
