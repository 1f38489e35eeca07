"""RemoteSite: a server's site of one model (``medrefine serve --site-dir``), as
:class:`medrefine.Site` reports and changes it.

    site = RemoteSite("127.0.0.1:50051", "nuclei-unet2d")
    print(site.report())          # every kept version and its held-out check
    site.rollback(5); site.reset()

Accepting goes through a session: :meth:`medrefine.client.RemoteSession.accept`. Errors are
:mod:`medrefine.client`'s (a server without a site for the model: ``RemoteStateError``).
"""

from __future__ import annotations

from typing import Any

import grpc

from medrefine.client import ClientTls, _raise, connect, stub
from medrefine.errors import InputError
from medrefine.records import SiteReport, SiteVersion
from medrefine.serve.convert import version_from_proto
from medrefine.v1 import refine_pb2 as pb


class RemoteSite:
    """The site of ``model`` on the server ``target`` ("host:port").

    Args:
        target: the server. model: the model's name (see ListModels).
        token: bearer token, if the server requires one. tls: TLS settings (None: plaintext).
        timeout: seconds allowed per call (None: no deadline).
    """

    def __init__(
        self,
        target: str,
        model: str,
        *,
        token: str | None = None,
        tls: ClientTls | None = None,
        timeout: float | None = None,
    ) -> None:
        self.target = target
        self.model = model
        self.timeout = timeout
        self._channel = connect(target, tls)
        self._stub = stub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def _call(self, method: str, request: Any) -> Any:
        try:
            call = getattr(self._stub, method)
            return call(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            _raise(exc)

    def report(self) -> SiteReport:
        """Every kept version, oldest first (GetSite); ``where`` names the server."""
        response = self._call("GetSite", pb.GetSiteRequest(model=self.model))
        versions = tuple(version_from_proto(v) for v in response.versions)
        return SiteReport(f"server {self.target}", self.model, versions)

    def head_source(self) -> tuple[str, str]:
        """The head a session opened now starts from, and why (as
        :attr:`medrefine.Session.head_source`)."""
        response = self._call("GetSite", pb.GetSiteRequest(model=self.model))
        return response.head_source, response.head_reason

    def rollback(self, version: int) -> SiteVersion:
        """Make kept ``version`` the site's state again, as a new version (RollbackSite)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError(f"version must be a kept site version (1 or more), got {version!r}")
        request = pb.RollbackSiteRequest(model=self.model, version=version)
        return version_from_proto(self._call("RollbackSite", request).version)

    def reset(self) -> SiteVersion:
        """Forget every accepted image, as a new version (ResetSite)."""
        response = self._call("ResetSite", pb.ResetSiteRequest(model=self.model))
        return version_from_proto(response.version)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> RemoteSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
