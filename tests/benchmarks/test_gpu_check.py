"""medrefine bench gpu: without CUDA it says what is missing; its harness runs (dry, on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine_lab.benchmarks import gpu_check


def test_without_cuda_it_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err
    assert "built without CUDA" in err or "torch.cuda.is_available() is False" in err


def test_a_cuda_build_without_a_gpu_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    why = gpu_check.missing_cuda()
    assert why is not None and "CUDA 12.8" in why and "sees no CUDA device" in why


def test_a_failing_configuration_is_reported_not_raised() -> None:
    run = gpu_check.run_config("cuda", "no-such-model", np.zeros((8, 8)), 1, 1, "cpu")
    assert run.error is not None and "no-such-model" in run.error
    lines = gpu_check.report("2D 512^2", [gpu_check.Run("cpu", [1.0], [1.0]), run])
    assert any("FAILED" in line for line in lines)


def test_agreement_is_the_worst_step() -> None:
    a = [np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)]
    b = [np.zeros((2, 2), np.uint8), np.array([[0, 1], [0, 0]], np.uint8)]
    assert gpu_check.agreement(a, b) == 0.75


@pytest.mark.slow
def test_dry_run_on_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--device", "cpu", "--case", "2d", "--refines", "2", "--repeats", "1"]
    assert gpu_check.main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("cpu", "cuda"))]
    assert len(rows) == 3, out
    assert all("100.0000%" in row for row in rows), out  # the same device gives the same masks
