"""The latency table aggregates refines over cases and compares like with like."""

from __future__ import annotations

from medrefine_lab.benchmarks.engine import EngineFigures
from medrefine_lab.benchmarks.latency import _row


def test_row_uses_only_the_refines_the_naive_loop_repeated() -> None:
    a = EngineFigures("a", 1000.0, 10.0, (100.0, 20.0, 20.0), (50, 3, 0), (5000.0,), 1.0)
    b = EngineFigures("b", 3000.0, 10.0, (300.0, 30.0), (50, 2), (15000.0,), 1.0)
    row = _row("m", [a, b])
    assert row[:2] == ["m", "2"]
    assert row[2] == "2000"  # set_image p50 of 1000 and 3000
    assert row[4] == "30"  # refine p50 over all five refines
    assert row[7] == "10000" and row[8] == "50x"  # naive 5000/15000 against fast 100/300
