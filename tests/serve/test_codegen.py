"""The checked-in gRPC code is exactly what the pinned grpcio-tools generates from the proto."""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    written = generate.generate(tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["refine_pb2.py", "refine_pb2.pyi", "refine_pb2_grpc.py"]
    checked_in = ROOT / "python" / "medrefine" / "v1"
    for path in written:
        assert path.read_text() == (checked_in / path.name).read_text(), (
            f"{path.name} differs from the generated code: run `python3 proto/generate.py`"
        )


def test_every_rpc_message_field_and_value_is_commented() -> None:
    """A comment line above, or a trailing comment, for each declaration of the proto."""
    lines = (ROOT / "proto" / "medrefine" / "v1" / "refine.proto").read_text().splitlines()
    declaration = re.compile(
        r"(rpc |message |enum |(repeated )?[\w.]+ \w+ = \d+|[A-Z0-9_]+ = \d+;)"
    )
    undocumented = [
        line.strip()
        for before, line in itertools.pairwise(lines)
        if declaration.match(line.strip())
        and "//" not in line
        and not before.strip().startswith("//")
    ]
    assert not undocumented, undocumented
