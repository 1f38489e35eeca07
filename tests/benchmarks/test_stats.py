"""The benchmarks' shared summary figure."""

from __future__ import annotations

import math

from medrefine_lab.benchmarks.stats import percentile


def test_percentile_of_timings_and_of_none() -> None:
    assert percentile([30.0, 10.0, 20.0], 50) == 20.0
    assert percentile((0.0, 100.0), 95) == 95.0
    assert math.isnan(percentile([], 50))
