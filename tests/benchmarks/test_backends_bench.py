"""``medrefine bench backends`` times every configuration on the same image and compares masks."""

from __future__ import annotations

import argparse

import medrefine as mr
from medrefine.cli import build_parser
from medrefine_lab.benchmarks import backends


def test_measure_times_each_config_and_onnxruntime_masks_agree() -> None:
    image = mr.load_sample("nuclei-stained").image[:, :64, :96]
    rows = backends.measure("small", image, "nuclei-unet2d", 2, [("all", 1), ("basic", 2)])
    assert [r.config for r in rows] == [
        "torch eager",
        "onnxruntime all, 1 threads",
        "onnxruntime basic, 2 threads",
    ]
    assert all(len(r.times_ms) == 2 and min(r.times_ms) > 0 for r in rows)
    assert all(r.median <= r.p95 <= max(r.times_ms) for r in rows)
    assert rows[0].agreement == 1.0 and min(r.agreement for r in rows) >= 0.999


def test_bench_backends_is_registered() -> None:
    args = build_parser().parse_args(["bench", "backends", "--case", "3d", "--repeats", "1"])
    assert isinstance(args, argparse.Namespace)
    assert args.func is backends.run and args.case == "3d" and args.repeats == 1
