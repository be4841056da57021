"""Benchmarks: run each script from the repository root (see bench/README.md)."""
