"""The fast engine: the reference ops of ``minidl/functional/`` computed faster, with the same results.

Each module says what it speeds up and why it equals the reference; docs/fast_engines.md explains them.
"""
