"""The reference engine: each operation as ``forward(...) -> (out, cache)`` and ``backward(dout, cache)``.

Plain whole-array formulas over NumPy or CuPy (``xp = get_array_module(x)``), the code the docs derive;
``minidl/fast/`` computes the same results faster.
"""
