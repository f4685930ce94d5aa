"""Batch normalisation over the channels of an (N, C, H, W) input, by whole-array formulas.

Per channel c, with M = N*H*W values:
    mean_c = sum(x) / M,   var_c = sum((x - mean_c)^2) / M     (biased)
    xhat = (x - mean_c) / sqrt(var_c + eps),   y = weight_c * xhat + bias_c
Training normalises with the batch's statistics and moves the running ones towards them (the running
variance uses the unbiased var_c * M / (M - 1)), as PyTorch; evaluation normalises with the running
statistics, which are then constants of the backward pass.
"""
from ..backend import get_array_module

AXES = (0, 2, 3)


def per_channel(v):
    """(C,) -> (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def update_running_statistics(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) * running + momentum * batch, the variance made unbiased."""
    # BEGIN SOLUTION
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * (var * (count / (count - 1)))
    # END SOLUTION


def batch_norm2d_forward(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """x (N, C, H, W) -> y (N, C, H, W), cache; as ``torch.nn.functional.batch_norm``.

    ``training``: normalise with the batch statistics and, when running_mean and running_var (C,) are
    given, update them in place with ``momentum``; otherwise normalise with the running statistics.
    weight and bias (C,) may be None.
    """
    xp = get_array_module(x)
    # BEGIN SOLUTION
    if training:
        mean = x.mean(axis=AXES)
        var = ((x - per_channel(mean)) ** 2).mean(axis=AXES)
        if running_mean is not None:
            update_running_statistics(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = (x - per_channel(mean)) * per_channel(inv_std)
    y = xhat if weight is None else xhat * per_channel(weight)
    if bias is not None:
        y = y + per_channel(bias)
    return y, (xhat, inv_std, weight, bias is not None, training)
    # END SOLUTION


def batch_norm2d_backward(dy, cache):
    """dy (N, C, H, W) -> dx (N, C, H, W), dweight (C,) or None, dbias (C,) or None (None where not given)."""
    xhat, inv_std, weight, has_bias, training = cache
    count = dy.size // dy.shape[1]
    # BEGIN SOLUTION
    # dbias = sum_{n,h,w} dy;   dweight = sum_{n,h,w} dy * xhat
    dbias = dy.sum(axis=AXES)
    dweight = (dy * xhat).sum(axis=AXES)
    scale = inv_std if weight is None else weight * inv_std
    if training:
        # dx = weight * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)): mean and var depend on x too
        dx = per_channel(scale) * (dy - per_channel(dbias / count) - xhat * per_channel(dweight / count))
    else:
        # dx = weight * inv_std * dy: the running statistics are constants
        dx = dy * per_channel(scale)
    return dx, (None if weight is None else dweight), (dbias if has_bias else None)
    # END SOLUTION
