"""TensorRT engines of an exported backbone, built once per (graph, shapes, precision, TensorRT,
GPU) and never loaded for another.

``medrefine export onnx`` writes ``<name>.backbone.onnx`` plus its metadata JSON;
:func:`engine_for` turns that folder into ``<name>.backbone.<key>.engine`` with one
optimisation profile (min/opt/max input shapes) in fp32 or fp16, using NVIDIA's documented
Python API (``tensorrt.Builder`` -> network -> ``OnnxParser`` -> builder config with the profile
and precision flag -> ``build_serialized_network``). Beside the engine, ``<...>.engine.json``
records the :class:`EngineKey` and the engine's SHA-256.

Cache rule: the key is the SHA-256 of the ONNX file, the three shapes, the precision, the
TensorRT version and the GPU's name, so an engine built elsewhere or from another graph has
another file name. An engine file is used only if its record names exactly the expected key
and the engine's bytes still hash to the recorded digest; anything else (a stale, foreign,
renamed or truncated engine) is rebuilt and overwritten, never deserialised.

TensorRT is installed from NVIDIA's package index (``pip install tensorrt`` fetches its
wheels from there at install time) and needs a CUDA GPU; :func:`missing_tensorrt` names what
is missing. Not yet run on hardware (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medrefine.errors import InputError, ResourceError, UnsupportedModelError

Shape = tuple[int, ...]
PRECISIONS = ("fp32", "fp16")


def parse_shape(text: str) -> Shape:
    """``"1x1x64x64"`` -> ``(1, 1, 64, 64)`` (batch, channels, *spatial; positive sizes)."""
    if not re.fullmatch(r"\d+(x\d+)+", text.strip()):
        raise InputError(
            f"shape must look like 1x1x64x64 (batch x channels x spatial), got {text!r}"
        )
    shape = tuple(int(v) for v in text.strip().split("x"))
    if any(v < 1 for v in shape):
        raise InputError(f"shape {text!r} has a size below 1")
    return shape


def check_profile(low: Shape, opt: Shape, high: Shape, rank: int | None = None) -> None:
    """Raise unless ``low <= opt <= high`` per axis, all of one rank (``rank`` if given)."""
    ranks = {len(low), len(opt), len(high)}
    if len(ranks) != 1 or (rank is not None and ranks != {rank}):
        want = f" (the graph's input has {rank} axes)" if rank is not None else ""
        raise InputError(f"min/opt/max shapes {low}, {opt}, {high} differ in rank{want}")
    if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
        raise InputError(f"the profile needs min <= opt <= max on every axis: {low}, {opt}, {high}")


@dataclass(frozen=True)
class EngineKey:
    """What an engine was built for; two engines with equal keys are interchangeable."""

    onnx_sha256: str
    min_shape: Shape
    opt_shape: Shape
    max_shape: Shape
    precision: str
    tensorrt_version: str
    gpu_name: str

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the key's canonical JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """The key as JSON-ready values (shapes as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing_tensorrt() -> str | None:
    """What TensorRT engines need and this machine lacks (None when nothing is missing)."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append(
            "TensorRT (the Python package 'tensorrt', whose wheels pip fetches from NVIDIA's "
            "package index)"
        )
    import torch

    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch.cuda.is_available() is False)")
    return " and ".join(missing) if missing else None


def engine_paths(folder: Path, model: str, key: EngineKey) -> tuple[Path, Path]:
    """The engine file and its record for ``key`` in ``folder``."""
    engine = folder / f"{model}.backbone.{key.digest()}.engine"
    return engine, engine.with_name(engine.name + ".json")


def usable(engine: Path, record: Path, key: EngineKey) -> bool:
    """True only if ``engine`` exists, its record names ``key`` exactly and its bytes hash to
    the recorded digest (so it is safe to deserialise)."""
    if not (engine.is_file() and record.is_file()):
        return False
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return saved.get("key") == key.record() and saved.get("engine_sha256") == file_sha256(engine)


def read_export(folder: Path) -> tuple[str, Path, dict[str, Any]]:
    """(model name, ONNX path, metadata) of a ``medrefine export onnx`` folder."""
    if not folder.is_dir():
        raise InputError(f"--onnx {folder}: not a folder (give the --out of medrefine export onnx)")
    metas = sorted(folder.glob("*.backbone.json"))
    if len(metas) != 1:
        raise InputError(
            f"--onnx {folder}: expected one <name>.backbone.json written by medrefine export "
            f"onnx, found {len(metas)}"
        )
    meta: dict[str, Any] = json.loads(metas[0].read_text())
    onnx_path = folder / str(meta.get("onnx", ""))
    if not onnx_path.is_file():
        raise InputError(f"--onnx {folder}: the metadata names {onnx_path.name}, which is missing")
    if file_sha256(onnx_path) != meta.get("onnx_sha256"):
        raise InputError(
            f"{onnx_path} does not hash to the metadata's onnx_sha256: it changed after export; "
            "export it again"
        )
    return str(meta["model"]), onnx_path, meta


def build_serialized(onnx_path: Path, input_name: str, key: EngineKey) -> bytes:
    """Build the engine for ``key`` with TensorRT's Python API; its serialized bytes.

    Raises:
        UnsupportedModelError: TensorRT cannot parse the graph or build the engine (its
            messages are included).
    """
    trt: Any = importlib.import_module("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    # TensorRT 10 has only explicit-batch networks (flag 0); earlier versions must ask for it.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UnsupportedModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, key.min_shape, key.opt_shape, key.max_shape)
    config.add_optimization_profile(profile)
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UnsupportedModelError(
            f"TensorRT could not build an engine of {onnx_path.name} for {key.record()}"
        )
    return bytes(serialized)


def engine_for(
    folder: Path, precision: str, low: Shape, opt: Shape, high: Shape
) -> tuple[Path, bool]:
    """The engine of the export in ``folder`` for this profile and precision: the cached one if
    :func:`usable`, else a new build. Returns (engine path, whether it was built now).

    Raises:
        ResourceError: TensorRT or a CUDA GPU is missing (named).
        InputError: not an export folder, or a bad profile.
        UnsupportedModelError: TensorRT refuses the graph.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    why = missing_tensorrt()
    if why is not None:
        raise ResourceError(f"export tensorrt needs {why}: not found here")
    model, onnx_path, meta = read_export(folder)
    check_profile(low, opt, high, len(meta["input"]["shape"]))
    import torch

    trt: Any = importlib.import_module("tensorrt")
    key = EngineKey(
        str(meta["onnx_sha256"]),
        low,
        opt,
        high,
        precision,
        str(trt.__version__),
        torch.cuda.get_device_name(),
    )
    engine, record = engine_paths(folder, model, key)
    if usable(engine, record, key):
        return engine, False
    data = build_serialized(onnx_path, str(meta["input"]["name"]), key)
    temporary = engine.with_suffix(".partial")
    temporary.write_bytes(data)
    temporary.replace(engine)
    digest = hashlib.sha256(data).hexdigest()
    record.write_text(json.dumps({"key": key.record(), "engine_sha256": digest}, indent=1))
    return engine, True
