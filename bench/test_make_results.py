"""Helpers of ``bench/make_results.py`` (the RESULTS.md and Pareto-plot generator)."""

from bench.make_results import pareto_front


def test_pareto_front():
    """The plot's front: nothing off it is beaten by nothing; duplicates and ties handled."""
    # (ms, dB): 1 is slower and worse than 0; 3 ties 2 in time but is worse; 5 repeats 4.
    points = [(1.0, 28.0), (2.0, 27.0), (3.0, 30.0), (3.0, 29.0), (10.0, 31.0), (10.0, 31.0),
              (0.5, 26.0)]
    assert pareto_front(points) == [6, 0, 2, 4]
    assert pareto_front([]) == []


def test_published_points_stay_off_the_front(tmp_path):
    """Layered LUTs join the Set5 panel at their published PSNR, never the front nor Set14."""
    from bench.make_results import PLOT_SIZE, Timing, make_plot, plot_points
    from bench.matrix import LAYERED_LABEL, Case

    lut = Timing(Case("lutsr", "lutsr a", PLOT_SIZE, 4, 2, "a"), (270, 480, 3), wall=[0.010])
    # Faster and (by its published figure) better than the LUT: still not on the front.
    shift = Timing(Case("layered", LAYERED_LABEL.format("ShiftLUT-L"), PLOT_SIZE, 4, 2,
                        "ShiftLUT-L"), (270, 480, 3), wall=[0.005])
    summary = {("lutsr a", "Set5"): (30.0, 0.85, 5), ("lutsr a", "Set14"): (27.0, 0.75, 14)}
    points = plot_points([lut, shift], summary, ["Set5", "Set14"])
    assert points["Set5"] == [("lutsr a (2T)", 10.0, 30.0, True),
                              ("ShiftLUT-L (2T)", 5.0, 31.33, False)]
    assert points["Set14"] == [("lutsr a (2T)", 10.0, 27.0, True)]
    fronts = make_plot(points, tmp_path / "pareto.png", quick=True)
    assert fronts == {"Set5": ["lutsr a (2T)"], "Set14": ["lutsr a (2T)"]}
    assert (tmp_path / "pareto.png").stat().st_size > 0
