"""Benchmarks: minidl against PyTorch on the same machine. ``python -m bench [--quick] [names...]``.

Each script ``bench/<name>.py`` exposes ``run(quick=False) -> rows`` and, run
alone (``python -m bench.<name>``), prints its rows as a markdown table.
"""
