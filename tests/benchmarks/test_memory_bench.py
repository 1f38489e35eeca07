"""``medrefine bench memory``: the resident set of a real 3D session in a child process, and its
growth per refine."""

from __future__ import annotations

import pytest

from medrefine_lab.benchmarks.memory import admission, growth, measure


def test_growth_is_the_slope_and_the_total_over_the_refines() -> None:
    rows = [{"at": "set_image", "rss_mib": 900.0}]
    rows += [{"at": f"refine {i}", "rss_mib": 1000.0 + 2.0 * i} for i in range(1, 11)]
    rows.append({"at": "ru_maxrss (all children so far)", "peak_mib": 1200.0})
    grew = growth(rows)
    assert grew == {"refines": 10.0, "total_mib": 18.0, "per_refine_mib": pytest.approx(2.0)}
    assert growth(rows[:2]) is None  # one refine: no growth to speak of


def test_a_small_session_reports_every_refine() -> None:
    rows = measure("session", interactions=4, shape=(16, 24, 24))
    refines = [r for r in rows if str(r["at"]).startswith("refine ")]
    assert [r["at"] for r in refines] == [f"refine {i}" for i in range(1, 5)]
    assert all(r["rss_mib"] > 0 and r["peak_mib"] >= r["rss_mib"] for r in refines)
    grew = growth(rows)
    assert grew is not None and grew["refines"] == 4.0


def test_set_images_peak_stays_under_its_admission_estimate() -> None:
    # nuclei-unet2d on 512x512, whole pass, measured in its own process
    (row,) = admission([0])
    assert row["path"] == "whole" and row["peak_mib"] > 50
    assert row["peak_mib"] <= row["est_peak_mib"] <= 1.6 * row["peak_mib"]
    assert 0.5 * row["held_mib"] <= row["est_held_mib"] <= 1.6 * row["held_mib"]
