"""Reproducible figures for Flowmetal; run a module with ``python -m benchmarks.NAME``."""
