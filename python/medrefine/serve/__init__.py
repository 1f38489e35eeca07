"""medrefine's gRPC service (``proto/medrefine/v1/refine.proto``): ``medrefine serve``.

``create_server(address, config) -> (server, port)`` builds the server: the ``Refiner`` servicer
over a registry of sessions, standard health checking and reflection, an optional bearer token,
TLS or mutual TLS, and a SQLite journal that lets a restarted server rebuild every session.

Names are imported on first use, so that :mod:`medrefine.client` can use
:mod:`medrefine.serve.convert` (numpy and protobuf only) without loading the server and the
engine behind it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrefine.serve.config import ServerConfig
    from medrefine.serve.server import Server, create_server, serve

_EXPORTS = {
    "Server": "medrefine.serve.server",
    "ServerConfig": "medrefine.serve.config",
    "create_server": "medrefine.serve.server",
    "serve": "medrefine.serve.server",
}

__all__ = ["Server", "ServerConfig", "create_server", "serve"]


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it here."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
