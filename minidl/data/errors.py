"""``DataError``: a problem with the user's data, reported as one line (the training script exits with status 2)."""


class DataError(ValueError):
    """Bad input data: a missing folder, an unknown layout, an unreadable file, mismatched sizes."""
