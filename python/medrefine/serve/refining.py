"""A streamed refine: progress events while the head trains, cancel and deadline honoured.

The refine runs in a worker thread that holds the session's lock and a compute slot; the handler
yields what the worker queues. ``Session.refine(progress=...)`` calls the progress hook before every
gradient step: it forwards the step to the client and raises ``CancelledError`` once the client
has cancelled or the deadline has passed, which leaves the session as before the refine. The same
check runs once more when the refine is computed, before it is committed (and before it is
journaled): a refine either commits before its deadline and is answered, or does not commit.
A deadline can still pass while the answer of a committed refine travels; the client then learns
the outcome from the session's ``mask_version`` in its next call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from medrefine.errors import CancelledError
from medrefine.serve import convert
from medrefine.serve.journal import EventKind
from medrefine.serve.registry import Entry
from medrefine.types import RefineProgress, RefineResult
from medrefine.v1 import refine_pb2 as pb

JournalFn = Callable[[Entry, EventKind], None]
CheckFn = Callable[[Entry], None]


def _progress_event(p: RefineProgress) -> pb.RefineEvent:
    return pb.RefineEvent(
        progress=pb.RefineProgress(
            iteration=p.iteration,
            max_iterations=p.max_iterations,
            loss=p.loss,
            wrong_marks=p.wrong_marks,
        )
    )


def _stopped(context: grpc.ServicerContext) -> str | None:
    """Why the refine should stop now (client gone or deadline passed), or None."""
    if not context.is_active():
        return "the client cancelled the refine"
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return "the refine's deadline passed"
    return None


def _refine(
    entry: Entry, context: grpc.ServicerContext, send: bool, out: queue.Queue[Any]
) -> RefineResult:
    """Run the session's refine. Raises CancelledError (session unchanged) if stopped."""

    def stop() -> None:
        reason = _stopped(context)
        if reason is not None:
            raise CancelledError(reason)

    def hook(p: RefineProgress) -> None:
        stop()
        if send:
            out.put(_progress_event(p))

    stop()  # the call may have waited for the session's lock or a compute slot past its deadline
    return entry.session.refine(progress=hook, before_commit=stop)


def _work(
    entry: Entry,
    compute: threading.BoundedSemaphore,
    request: pb.RefineRequest,
    context: grpc.ServicerContext,
    journal: JournalFn,
    check: CheckFn,
    out: queue.Queue[Any],
) -> pb.RefineEvent:
    """Refine under the session's lock and a compute slot, journal it; the result event."""
    with entry.lock, compute:
        check(entry)  # still live here, and not moved on by another server
        result = _refine(entry, context, request.options.progress, out)
        journal(entry, "refine")
        entry.new_version(result.mask)
        return pb.RefineEvent(
            result=pb.RefineResponse(
                mask=entry.update(request.known_version),
                summary=convert.summary_to_proto(result),
                status=entry.status(),
            )
        )


def run_refine(
    entry: Entry,
    compute: threading.BoundedSemaphore,
    request: pb.RefineRequest,
    context: grpc.ServicerContext,
    journal: JournalFn,
    check: CheckFn,
) -> Iterator[pb.RefineEvent]:
    """Refine ``entry``'s session; yields progress events (if asked) and then the result.

    Without progress events the refine runs in the handler's thread; with them, in a worker
    thread whose events the handler yields as they come.
    """
    out: queue.Queue[Any] = queue.Queue()
    if not request.options.progress:
        yield _work(entry, compute, request, context, journal, check, out)
        return

    def work() -> None:
        try:
            out.put(_work(entry, compute, request, context, journal, check, out))
        except Exception as exc:
            out.put(exc)

    threading.Thread(target=work, name=f"refine-{entry.id[:8]}", daemon=True).start()
    while True:
        item = out.get()
        if isinstance(item, Exception):
            raise item
        yield item
        if item.HasField("result"):
            return
