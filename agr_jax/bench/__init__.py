"""Throughput benchmarks behind `python -m agr_jax.benchmark` (see suite.py for the sections)."""
