"""Reading an ONNX model from a file, bytes or a ``ModelProto``, with typed errors for what is
not one: an empty, truncated, damaged or foreign file gets :class:`~medrefine.errors.InputError`
naming it. Every reader of ONNX files in medrefine goes through :func:`load` (the backbone's
runner, the graph cutter, ``from_onnx``)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from medrefine.errors import InputError, NotFoundError, first_line

#: An ONNX model as medrefine takes it: a ``ModelProto``, its serialized bytes, or a path.
OnnxSource = onnx.ModelProto | bytes | str | os.PathLike[str]


def _complete(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    """``model`` if it has what every ONNX network has (a graph of nodes with an input and an
    output, an operator set); else :class:`InputError`: bytes that happened to parse."""
    graph = model.graph
    missing = [
        part
        for part, present in (
            ("nodes", len(graph.node) > 0),
            ("graph input", len(graph.input) > 0),
            ("graph output", len(graph.output) > 0),
            ("operator set import", len(model.opset_import) > 0),
        )
        if not present
    ]
    if missing:
        raise InputError(
            f"{what} is not a complete ONNX model (no {', no '.join(missing)}): it may be "
            "truncated or another kind of file; export the network to ONNX again"
        )
    return model


def load(source: OnnxSource) -> onnx.ModelProto:
    """The ONNX model at a path, or given as bytes or a ``ModelProto``.

    Raises:
        NotFoundError: no file at the path.
        InputError: the file (or the bytes) is empty, cannot be parsed as an ONNX model
            (truncated, damaged, another kind of file), or lacks nodes, an input, an output or
            an operator set; the message names the file.
    """
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, bytes):
        what, size = f"the {len(source)} bytes given as an ONNX model", len(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise NotFoundError(f"no ONNX file at {os.fspath(source)!r}")
        what, size = f"the ONNX file {os.fspath(source)!r}", path.stat().st_size
    if size == 0:
        raise InputError(f"{what} is empty; export the network to ONNX again")
    try:
        if isinstance(source, bytes):
            return _complete(onnx.load_from_string(source), what)
        return _complete(onnx.load(os.fspath(source)), what)
    except InputError:
        raise
    except Exception as exc:  # protobuf's DecodeError, a missing external-data file, ...
        raise InputError(
            f"{what} cannot be read as an ONNX model ({type(exc).__name__}: "
            f"{first_line(exc, 200)}): it may be truncated, damaged or another kind of file; "
            "export the network to ONNX again"
        ) from exc
