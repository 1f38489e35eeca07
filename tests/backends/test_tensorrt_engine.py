"""TensorRT engine cache: the key, the refusal of stale or foreign engines, what is missing.

TensorRT itself cannot be installed on the development machines (pip fetches its wheels from
NVIDIA's index, which they do not reach) and they have no GPU: the build test is skipped
there, with that reason, and is not counted as passing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import medrefine as mr
from medrefine.backends import tensorrt_engine as te
from medrefine.cli import main
from medrefine.errors import InputError, ResourceError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
KEY = te.EngineKey(
    "ab" * 32, (1, 1, 16, 16), (1, 1, 64, 64), (1, 1, 128, 128), "fp16", "10.3.0", "NVIDIA H200"
)


def test_every_part_of_the_key_changes_its_digest() -> None:
    changes = {
        "onnx_sha256": "cd" * 32,
        "min_shape": (1, 1, 8, 8),
        "opt_shape": (1, 1, 96, 96),
        "max_shape": (1, 1, 256, 256),
        "precision": "fp32",
        "tensorrt_version": "10.4.0",
        "gpu_name": "NVIDIA H100 80GB HBM3",
    }
    digests = {replace(KEY, **{k: v}).digest() for k, v in changes.items()}
    assert KEY.digest() not in digests and len(digests) == len(changes)
    assert (
        KEY.digest()
        == te.EngineKey(**{f: getattr(KEY, f) for f in KEY.__dataclass_fields__}).digest()
    )


def _engine(folder: Path, key: te.EngineKey, data: bytes = b"engine bytes") -> tuple[Path, Path]:
    engine, record = te.engine_paths(folder, "m", key)
    engine.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    record.write_text(json.dumps({"key": key.record(), "engine_sha256": digest}))
    return engine, record


def test_a_matching_engine_is_reused(tmp_path: Path) -> None:
    engine, record = _engine(tmp_path, KEY)
    assert te.usable(engine, record, KEY)


def test_a_foreign_engine_is_not_loaded(tmp_path: Path) -> None:
    """Built on another GPU, with another TensorRT or from another graph: another key."""
    for other in (
        replace(KEY, gpu_name="NVIDIA A100-SXM4-80GB"),
        replace(KEY, tensorrt_version="8.6.1"),
        replace(KEY, onnx_sha256="ef" * 32),
    ):
        engine, record = _engine(tmp_path, other)
        assert te.engine_paths(tmp_path, "m", KEY)[0] != engine  # another file name
        # even renamed to this key's file name, its record gives it away
        want_engine, want_record = te.engine_paths(tmp_path, "m", KEY)
        engine.rename(want_engine)
        record.rename(want_record)
        assert not te.usable(want_engine, want_record, KEY)


def test_a_changed_or_unrecorded_engine_is_not_loaded(tmp_path: Path) -> None:
    engine, record = _engine(tmp_path, KEY)
    engine.write_bytes(b"engine bytes, truncated or rebuilt by hand")
    assert not te.usable(engine, record, KEY)
    record.unlink()
    assert not te.usable(engine, record, KEY)
    record.write_text("not json")
    assert not te.usable(engine, record, KEY)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("1x1x64x64", True), ("1x3x8x8x8", True), ("64", False), ("1x0x4", False), ("1,1,4", False)],
)
def test_shapes_are_parsed_strictly(text: str, ok: bool) -> None:
    if ok:
        assert te.parse_shape(text) == tuple(int(v) for v in text.split("x"))
    else:
        with pytest.raises(InputError, match="shape"):
            te.parse_shape(text)


def test_the_profile_must_be_ordered_and_of_the_graphs_rank() -> None:
    te.check_profile((1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 32, 32), 4)
    with pytest.raises(InputError, match="min <= opt <= max"):
        te.check_profile((1, 1, 32, 8), (1, 1, 16, 16), (1, 1, 32, 32), 4)
    with pytest.raises(InputError, match="rank"):
        te.check_profile((1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 32, 32), 5)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are here")
def test_without_tensorrt_the_error_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    why = te.missing_tensorrt()
    assert why is not None and ("NVIDIA's package index" in why or "CUDA GPU" in why)
    with pytest.raises(ResourceError, match="not found here"):
        te.engine_for(tmp_path, "fp16", (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8))
    args = ["export", "tensorrt", "--onnx", str(tmp_path), "--min", "1x1x8x8", "--opt", "1x1x8x8"]
    assert main([*args, "--max", "1x1x8x8"]) == 2
    assert "not found here" in capsys.readouterr().err


@pytest.mark.skipif(
    not HAS_TRT,
    reason="needs TensorRT (pip fetches it from NVIDIA's index, unreachable here) and a GPU",
)
def test_build_then_reuse_then_rebuild_when_stale(tmp_path: Path) -> None:
    from medrefine.onnx.export import export_backbone

    export_backbone(mr.load_model("nuclei-unet2d"), tmp_path)
    shapes = ((1, 3, 64, 64), (1, 3, 256, 256), (1, 3, 512, 512))
    engine, built = te.engine_for(tmp_path, "fp16", *shapes)
    assert built and engine.is_file()
    again, built_again = te.engine_for(tmp_path, "fp16", *shapes)
    assert again == engine and not built_again
    engine.write_bytes(engine.read_bytes()[:-1])  # a damaged engine is rebuilt
    _, rebuilt = te.engine_for(tmp_path, "fp16", *shapes)
    assert rebuilt
