"""Fast batch normalisation: ``minidl/functional/batchnorm.py`` worked a few channels at a time, in cache.

Speeds up: fewer passes over memory and no full-size temporaries (about 2x forward on 2 cores, see
docs/fast_engines.md). Equal to the reference: the same per-channel formulas, evaluated block by block.

The formulas (batch statistics, the running ones' update, evaluation mode) are the reference's
(docs/batchnorm.md). Statistics are computed in the input's dtype.

x - mean is never stored whole: on the CPU each pass makes it a few channels
at a time, all samples (``centered_blocks``, about 1 MiB, so it stays in
cache), and does all of those channels' work on it: the variance and y in
the forward pass, dbias, dweight and dx in the backward pass. That saves a
full-size array and several passes over memory each way. The price: the cache
keeps x itself, so x must not be changed in place before backward (as for
Conv2d outside its Winograd path, which keeps its input too).
"""
from ..backend import cpu_budget, get_array_module, is_gpu_array
from ..functional.batchnorm import update_running_statistics
from .workspace import workspace

BLOCK_BYTES = 1 << 20


def plane_sums(a):
    """a (n, k, P) -> (k,): pairwise sums along each plane of P values, then over n."""
    return a.sum(axis=2).sum(axis=0)


def channel_sum(x):
    """(N, C, H, W) -> (C,): plane_sums over the H*W planes."""
    n, c, h, w = x.shape
    return plane_sums(x.reshape(n, c, h * w))


def plane_dots(a, b):
    """a, b (n, k, P) -> (k,): sum over n and P of a * b. On the CPU one BLAS dot per plane (no temporary);
    on a GPU, where n*k one-row GEMMs run poorly, a product and one reduction."""
    if is_gpu_array(a):
        return (a * b).sum(axis=(0, 2))
    return (a[:, :, None, :] @ b[:, :, :, None]).sum(axis=(0, 2, 3))


def channel_blocks(x):
    """Channel slices covering x (N, C, H, W), each block x[:, slice] within BLOCK_BYTES on the CPU (at
    least one channel); all channels at once on a GPU."""
    n, c, h, w = x.shape
    budget = cpu_budget(x, BLOCK_BYTES)
    step = c if budget is None else max(1, budget // max(1, n * h * w * x.itemsize))
    return [slice(first, min(first + step, c)) for first in range(0, c, step)]


def centered_blocks(x, mean):
    """Yield (channels, block): block (N, k, H*W) = x[:, channels] - mean[channels], in one reused buffer
    (valid until the next block)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    for channels in channel_blocks(x):
        part = flat[:, channels]
        block = workspace.take("batchnorm.centered", part.shape, x.dtype, x)
        xp.subtract(part, mean[channels, None], out=block)
        yield channels, block


def channel_scale(inv_std, weight, channels):
    """weight * inv_std (or inv_std alone without weight) for a block of channels: y's factor on x - mean."""
    return inv_std[channels] if weight is None else weight[channels] * inv_std[channels]


def batch_norm2d_forward(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """x (N, C, H, W) -> y (N, C, H, W), cache; as ``torch.nn.functional.batch_norm``.

    ``training``: normalise with the batch statistics and, when running_mean and
    running_var (C,) are given, update them in place with ``momentum``; otherwise
    normalise with the running statistics. weight and bias (C,) may be None.
    The cache keeps x itself (not a copy), the mean and 1 / sqrt(var + eps).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    count = n * h * w
    # training: two passes, the mean here, then the mean of (x - mean)^2 in the blocks (more accurate than
    # mean(x^2) - mean^2); eval: the cache's own copy of running_mean, which may move before backward
    mean = channel_sum(x) / count if training else running_mean.copy()
    var = xp.empty_like(mean) if training else running_var
    inv_std = xp.empty_like(mean)
    y = xp.empty(x.shape, dtype=x.dtype)
    flat_y = y.reshape(n, c, h * w)
    for channels, block in centered_blocks(x, mean):
        if training:
            var[channels] = plane_dots(block, block) / count
        inv_std[channels] = 1 / xp.sqrt(var[channels] + eps)
        scale = channel_scale(inv_std, weight, channels)
        # y = (x - mean) * weight * inv_std + bias
        out = flat_y[:, channels]
        xp.multiply(block, scale[:, None], out=out)
        if bias is not None:
            out += bias[channels, None]
    if training and running_mean is not None:
        update_running_statistics(running_mean, running_var, mean, var, count, momentum)
    return y, (x, mean, inv_std, weight, bias is not None, training)


def batch_norm2d_backward(dy, cache):
    """dy (N, C, H, W) -> dx (N, C, H, W), dweight (C,) or None, dbias (C,) or None (None where not given).

    cache: (x, mean (C,), inv_std (C,), weight (C,) or None, has_bias, training) from the forward pass.
    """
    x, mean, inv_std, weight, has_bias, training = cache
    xp = get_array_module(dy)
    n, c, h, w = dy.shape
    count = n * h * w
    flat_dy = dy.reshape(n, c, h * w)
    dx = xp.empty(dy.shape, dtype=dy.dtype)
    flat_dx = dx.reshape(n, c, h * w)
    dweight, dbias = xp.empty_like(inv_std), xp.empty_like(inv_std)
    for channels, block in centered_blocks(x, mean):
        part, out = flat_dy[:, channels], flat_dx[:, channels]
        # dbias = sum_{n,h,w} dy;  dweight = sum_{n,h,w} dy * xhat = inv_std * sum dy * (x - mean)
        dbias[channels] = plane_sums(part)
        dweight[channels] = plane_dots(part, block) * inv_std[channels]
        scale = channel_scale(inv_std, weight, channels)
        if training:
            # dx = (1/M) inv_std (M dxhat - sum(dxhat) - xhat sum(dxhat xhat)), with dxhat = weight * dy,
            # i.e. dx = weight * inv_std * (dy - dbias / M - (x - mean) * inv_std * dweight / M)
            xp.multiply(block, (-inv_std[channels] * dweight[channels] / count)[:, None], out=out)
            out += part
            out -= (dbias[channels] / count)[:, None]
            out *= scale[:, None]
        else:
            # dx = dy * weight * inv_std: the running statistics are constants
            xp.multiply(part, scale[:, None], out=out)
    return dx, (None if weight is None else dweight), (dbias if has_bias else None)
