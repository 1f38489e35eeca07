"""medrefine's gRPC service (``proto/medrefine/v1/refine.proto``): ``medrefine serve``.

``create_server(address, config) -> (server, port)`` builds the server: the ``Refiner`` servicer
over a registry of sessions, standard health checking and reflection, an optional bearer token,
TLS or mutual TLS, and a SQLite journal that lets a restarted server rebuild every session.
"""

from medrefine.serve.config import ServerConfig
from medrefine.serve.server import Server, create_server, serve

__all__ = ["Server", "ServerConfig", "create_server", "serve"]
