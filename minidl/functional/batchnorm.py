"""Batch normalisation over the channels of an (N, C, H, W) input.

Per channel c, with M = N*H*W values:
    mean_c = sum(x) / M,   var_c = sum((x - mean_c)^2) / M     (two passes, biased)
    xhat = (x - mean_c) / sqrt(var_c + eps),   y = weight_c * xhat + bias_c
Training normalises with the batch's statistics and moves the running ones
towards them (the running variance uses the unbiased var_c * M / (M - 1)),
as PyTorch; evaluation normalises with the running statistics. Statistics are
computed in the input's dtype.
"""
from ..backend import get_array_module


def _per_channel(vector):
    """(C,) -> (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return vector.reshape(1, -1, 1, 1)


def channel_sum(x):
    """(N, C, H, W) -> (C,): pairwise sums along each contiguous H*W plane, then over N."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w).sum(axis=2).sum(axis=0)


def channel_dot(a, b):
    """(N, C, H, W) twice -> (C,): sum over n, h, w of a * b, one BLAS dot per plane (no temporary)."""
    n, c, h, w = a.shape
    return (a.reshape(n, c, 1, h * w) @ b.reshape(n, c, h * w, 1)).sum(axis=(0, 2, 3))


def batch_statistics(x):
    """x (N, C, H, W) -> centered x - mean (N, C, H, W), mean (C,), biased variance (C,)."""
    count = x.size // x.shape[1]
    mean = channel_sum(x) / count
    centered = x - _per_channel(mean)
    return centered, mean, channel_dot(centered, centered) / count


def update_running_statistics(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) * running + momentum * batch, the variance made unbiased."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * (var * (count / (count - 1)))


def batch_norm2d_forward(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """x (N, C, H, W) -> y (N, C, H, W), cache; as ``torch.nn.functional.batch_norm``.

    ``training``: normalise with the batch statistics and, when running_mean and
    running_var (C,) are given, update them in place with ``momentum``; otherwise
    normalise with the running statistics. weight and bias (C,) may be None.
    The cache keeps x - mean and 1 / sqrt(var + eps), whose product is xhat.
    """
    if training:
        centered, mean, var = batch_statistics(x)
        if running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
    else:
        centered, var = x - _per_channel(running_mean), running_var
    inv_std = 1 / get_array_module(x).sqrt(var + eps)
    y = centered * _per_channel(inv_std if weight is None else weight * inv_std)
    if bias is not None:
        y += _per_channel(bias)
    return y, (centered, inv_std, weight, bias is not None, training)


def batch_norm2d_backward(dy, cache):
    """dy (N, C, H, W) -> dx (N, C, H, W), dweight (C,) or None, dbias (C,) or None (None where not given)."""
    centered, inv_std, weight, has_bias, training = cache
    # dbias = sum_{n,h,w} dy;  dweight = sum_{n,h,w} dy * xhat, with xhat = centered * inv_std
    dbias = channel_sum(dy)
    dweight = channel_dot(dy, centered) * inv_std
    scale = _per_channel(inv_std if weight is None else weight * inv_std)
    if training:
        count = dy.size // dy.shape[1]
        # dx = (1/M) inv_std (M dxhat - sum(dxhat) - xhat sum(dxhat xhat)), with dxhat = weight * dy
        dx = centered * _per_channel(-inv_std * dweight / count)
        dx += dy
        dx -= _per_channel(dbias / count)
        dx *= scale
    else:
        # dx = dy * weight * inv_std: the running statistics are constants
        dx = dy * scale
    return dx, (None if weight is None else dweight), (dbias if has_bias else None)
