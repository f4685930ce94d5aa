"""Errors the training script turns into one-line messages instead of tracebacks."""


class ConfigError(ValueError):
    """A bad option value or combination (exit status 2)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not match the model (exit status 2)."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and the step."""
