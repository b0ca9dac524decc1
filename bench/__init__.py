"""Benchmarks: `python -m bench --n 200` (see bench/__main__.py)."""
