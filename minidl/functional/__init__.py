"""The functional core: each operation as ``forward(...) -> (out, cache)`` and ``backward(dout, cache)``."""
