"""Helpers of ``bench/make_results.py`` (the RESULTS.md and Pareto-plot generator)."""

from bench.make_results import pareto_front


def test_pareto_front():
    """The plot's front: nothing off it is beaten by nothing; duplicates and ties handled."""
    # (ms, dB): 1 is slower and worse than 0; 3 ties 2 in time but is worse; 5 repeats 4.
    points = [(1.0, 28.0), (2.0, 27.0), (3.0, 30.0), (3.0, 29.0), (10.0, 31.0), (10.0, 31.0),
              (0.5, 26.0)]
    assert pareto_front(points) == [6, 0, 2, 4]
    assert pareto_front([]) == []
