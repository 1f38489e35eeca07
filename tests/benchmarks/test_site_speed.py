"""``medrefine bench site-speed`` runs on the shipped series and prints its three figures."""

from __future__ import annotations

import pytest

from medrefine.cli import main


def test_site_speed_prints_accept_and_open_costs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to the terminal width
    assert main(["bench", "site-speed", "--images", "6", "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "accept: sample, refit, check" in text and "last 6 of 6 accepts" in text
    assert "open from the site head (site v6)" in text  # six true masks: the head is in use
    assert "open from the network (baseline)" in text
    # the fluorescence network is wrong in kind on the stained series: the site head fuses
    assert "refine from the site head, fused" in text and "ratio fused / local, p50" in text
