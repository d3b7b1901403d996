"""Benchmarks: `python -m benchmarks NAME` prints JSON lines (see each module)."""
