# ruff: noqa: N802  (method names are the proto's rpc names)
"""The servicer's site calls: AcceptMask, GetSite, RollbackSite, ResetSite, and the head fields
of OpenSession (:class:`medrefine.serve.servicer.RefinerServicer` inherits them).

Any caller the server admits (its token, its client certificates) may accept, roll back or reset
a site: a site is shared by every session of its model, as a network's weights are.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from medrefine.errors import InputError, NotFoundError, StateError
from medrefine.serve.convert import version_to_proto
from medrefine.serve.registry import Entry, Registry
from medrefine.serve.sites import describe
from medrefine.serve.status import unary
from medrefine.v1 import refine_pb2 as pb

log = logging.getLogger("medrefine.serve")


def head_fields(entry: Entry) -> dict[str, Any]:
    """OpenSessionResponse's fields saying which head ``entry``'s session started from."""
    source, reason = entry.session.head_source
    start = entry.start
    return {
        "head_source": source,
        "head_reason": reason,
        "reaches_wide": start is not None and start.wide,
        "site_version": 0 if start is None else start.version,
    }


class SiteCalls:
    """The site RPCs, on the registry's sites (:mod:`medrefine.serve.sites`)."""

    reg: Registry

    @unary
    def AcceptMask(
        self, request: pb.AcceptMaskRequest, context: grpc.ServicerContext
    ) -> pb.AcceptMaskResponse:
        with self.reg.hold(request.session_id) as entry, self.reg.compute:
            self.reg.sites.require(entry.model)
            if request.mask_version != entry.version:
                raise StateError(
                    f"mask_version {request.mask_version} is not the session's current mask "
                    f"(version {entry.version}): accept only the mask shown, once it is current"
                )
            done = entry.accepted
            if done is not None and done[0] == entry.version and not entry.session.pending:
                version = done[1]  # a retry: this mask is in the site already
            else:
                version = entry.session.accept()
                entry.accepted = (entry.version, version)
                log.info(
                    "session %s accepted mask %d: site of %s v%d, %d images, %s",
                    entry.id, entry.version, entry.model, version.version, version.images,
                    "in use" if version.in_use else "not used",
                )  # fmt: skip
            return pb.AcceptMaskResponse(version=version_to_proto(version), status=entry.status())

    @unary
    def GetSite(
        self, request: pb.GetSiteRequest, context: grpc.ServicerContext
    ) -> pb.GetSiteResponse:
        self.reg.model(request.model)
        site = self.reg.sites.require(request.model)
        report = site.report()
        start = site.start()
        source, reason = describe(start)
        return pb.GetSiteResponse(
            model=request.model,
            versions=[version_to_proto(v) for v in report.versions],
            head_source=source,
            head_reason=reason,
            reaches_wide=start.wide,
        )

    @unary
    def RollbackSite(
        self, request: pb.RollbackSiteRequest, context: grpc.ServicerContext
    ) -> pb.SiteVersionResponse:
        self.reg.model(request.model)
        site = self.reg.sites.require(request.model)
        if request.version < 1:
            raise InputError("version must be a kept site version (1 or more; see GetSite)")
        try:
            version = site.rollback(request.version)
        except NotFoundError:
            kept = [v.version for v in site.report().versions]
            span = f"v{kept[0]} to v{kept[-1]}" if kept else "none"
            raise NotFoundError(
                f"the site of {request.model!r} keeps no version {request.version} (kept: {span})"
            ) from None
        log.info("site of %s rolled back to v%d as v%d", request.model, request.version,
                 version.version)  # fmt: skip
        return pb.SiteVersionResponse(version=version_to_proto(version))

    @unary
    def ResetSite(
        self, request: pb.ResetSiteRequest, context: grpc.ServicerContext
    ) -> pb.SiteVersionResponse:
        self.reg.model(request.model)
        version = self.reg.sites.require(request.model).reset()
        log.info("site of %s reset as v%d", request.model, version.version)
        return pb.SiteVersionResponse(version=version_to_proto(version))
