"""Benchmarks (pytest-benchmark).

A package, so that bench/conftest.py does not shadow tests/conftest.py.
"""
