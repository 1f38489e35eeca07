"""The command line: demo (the README's main command), models, typed errors as exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrefine.cli import main


def test_demo_runs_on_a_shipped_sample_and_writes_the_overlay(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.png"
    site = tmp_path / "site.png"
    argv = ["demo", "--sample", "hippocampus-017", "--interactions", "2", "--out", str(out)]
    assert main([*argv, "--site-out", str(site)]) == 0
    text = capsys.readouterr().out
    assert "hippocampus-unet3d" in text and "overlay written" in text
    assert out.stat().st_size > 10_000
    # the site part: the series' last image opens from what the first ones taught
    assert "a site learns from accepted masks" in text and site.stat().st_size > 10_000


def test_models_lists_every_zoo_model(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich truncates to the terminal width
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ("nuclei-unet2d", "fetalhead-unet2d", "hippocampus-unet3d", "nuclei-fluo-unet2d"):
        assert name in text


def test_typed_errors_become_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "bench",
            "accuracy",
            "--data",
            str(tmp_path),
            "--model",
            "nuclei-unet2d",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("medrefine: error:") and "cases.csv" in err


def test_bad_config_override_is_reported(capsys) -> None:
    assert main(["demo", "--config", "nope=1", "--out", "/dev/null"]) == 2
    assert "unknown RefineConfig setting" in capsys.readouterr().err


def test_unknown_subcommand_exits_by_argparse() -> None:
    with pytest.raises(SystemExit):
        main(["nope"])
