"""Optional parts of medrefine (``pip install "medrefine[EXTRA]"``) and importing them on use.

The base install is what a Python user of :class:`medrefine.Session` needs. The rest is loaded
only when a call needs it, and a missing one raises :class:`~medrefine.errors.MissingExtraError`
naming the extra to install:

| extra        | for                                                | packages                     |
|--------------|----------------------------------------------------|------------------------------|
| ``serve``    | ``medrefine serve``, :mod:`medrefine.client`       | grpcio, protobuf, connectrpc |
| ``io``       | DICOM in, DICOM-SEG out (:mod:`medrefine.io`)      | pydicom, highdicom           |
| ``viz``      | overlays and plots (``medrefine demo``, ``bench``) | matplotlib                   |
| ``cpu``      | ONNX Runtime, CPU (``backend="onnxruntime"``)      | onnxruntime                  |
| ``postgres`` | a PostgreSQL journal or site                       | psycopg                      |

``all`` is serve, io, viz and cpu. The lab (the simulated user, seed baselines, ``medrefine
demo`` and ``medrefine bench``) is a distribution of its own, ``medrefine-lab`` in the checkout's
``lab/`` folder; a command that needs it names it the same way.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from medrefine.errors import MissingExtraError

#: The extra that installs each optional top-level module.
EXTRA_OF: dict[str, str] = {
    "grpc": "serve",
    "grpc_health": "serve",
    "grpc_reflection": "serve",
    "google": "serve",  # google.protobuf
    "connectrpc": "serve",
    "pydicom": "io",
    "highdicom": "io",
    "matplotlib": "viz",
    "onnxruntime": "cpu",
    "medrefine_lab": "lab",
    "cv2": "lab",
    "SimpleITK": "lab",
    "psycopg": "postgres",
}


def install_line(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "medrefine[extra]"``, or for the lab
    (a distribution of its own) ``pip install ./lab`` in a checkout."""
    if extra == "lab":
        return "pip install ./lab (in a checkout of medrefine)"
    return f'pip install "medrefine[{extra}]"'


def missing(exc: ModuleNotFoundError, purpose: str) -> MissingExtraError | None:
    """The :class:`MissingExtraError` to raise for ``exc`` (a failed import) when the missing
    module belongs to an extra, else None (a module medrefine itself lacks: a real bug).

    Args:
        exc: the import's error (its ``name`` is the missing module, dotted).
        purpose: what needed it, for the message (``"medrefine serve"``, ``"reading DICOM"``).
    """
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    what = "medrefine's lab" if extra == "lab" else f"the {extra!r} extra"
    return MissingExtraError(
        f"{purpose} needs {what} (module {exc.name!r} is not installed): {install_line(extra)}",
        extra,
        module,
    )


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (dotted) for ``purpose``.

    Raises:
        MissingExtraError: it, or a package it needs, is not installed; names the extra.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        error = missing(exc, purpose)
        if error is None:
            raise
        raise error from exc


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (no screen needed).

    Raises:
        MissingExtraError: matplotlib is not installed (the ``viz`` extra).
    """
    mpl = require("matplotlib", "drawing a figure")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "drawing a figure")
