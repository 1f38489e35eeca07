"""Benchmarks, one module per ``medrefine bench NAME``: each has ``add_parser`` and ``run``."""
