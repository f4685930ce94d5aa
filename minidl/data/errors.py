"""``DataError``: a problem with the user's data, reported without a traceback (the training script exits with
status 2): one line, or one line per file when several files are bad. ``listing`` caps how many files it names."""

MAX_LISTED = 20  # items an error names before it gives only the count of the rest


class DataError(ValueError):
    """Bad input data: a missing folder, an unknown layout, an unreadable file, mismatched sizes."""


def listing(items, separator="; ", limit=MAX_LISTED):
    """The first ``limit`` of ``items`` joined by ``separator``, then "and N more" for the rest."""
    items = list(items)
    shown = separator.join(str(item) for item in items[:limit])
    return shown + (f"{separator}and {len(items) - limit} more" if len(items) > limit else "")
