"""``no_grad``: a context in which forward passes keep nothing for backward."""
import functools

_grad_enabled = True


def is_grad_enabled():
    """True unless inside ``minidl.no_grad()``."""
    return _grad_enabled


class no_grad:
    """Context manager (and decorator) that stops layers from caching for backward.

    Use it for evaluation and inference: activations are freed as soon as the
    next layer has consumed them. BatchNorm2d in training mode still updates
    its running statistics, as in PyTorch.
    """

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)
        return wrapper
