"""Benchmarks: real training runs that print figures (not tests)."""
