"""Image uploads (OpenSession streams) bounded in time, in number and in memory, server-wide.

grpcio gives a handler its request stream as a blocking iterator: a client that sends a header
and then nothing holds the handler's thread for as long as it likes, and enough of them hold
every thread (health checks included). Here:

- :class:`IdleStream` reads the stream in a helper thread and hands messages over a small queue;
  a wait longer than ``upload_idle_s`` refuses the upload (RESOURCE_EXHAUSTED, reason
  ``UPLOAD_IDLE``) and frees its thread and memory.
- :class:`Uploads` admits at most ``max_uploads`` streams at once (the server's thread pool has
  that many threads for them plus a reserve for every other call), and reserves the bytes each
  header declares against ``max_upload_bytes_total`` before a chunk is read (reason
  ``UPLOAD_BUDGET`` past it).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from medrefine.engine.budget.admission import size
from medrefine.errors import ResourceError
from medrefine.serve.status import UploadBudgetError, UploadIdleError

_END = object()  # the stream ended


class IdleStream:
    """The messages of a request stream, each waited for at most ``idle_s`` seconds.

    Args:
        messages: grpcio's request iterator.
        idle_s: the longest wait for one message, seconds.
    """

    def __init__(self, messages: Iterator[Any], idle_s: float) -> None:
        self.idle_s = idle_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._pump, args=(messages,), name="upload-reader", daemon=True
        )
        self._thread.start()

    def _hand(self, item: Any) -> bool:
        """Queue ``item`` unless the reader stopped; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, messages: Iterator[Any]) -> None:
        try:
            for message in messages:
                if not self._hand(message):
                    return
            self._hand(_END)
        except Exception as exc:  # the call was cancelled, or a message did not decode
            self._hand(exc)

    def next(self) -> Any | None:
        """The next message, or None at the end of the stream.

        Raises:
            UploadIdleError: nothing came for ``idle_s`` seconds.
            Exception: whatever reading the stream raised (e.g. an undecodable message).
        """
        try:
            item = self._queue.get(timeout=self.idle_s)
        except queue.Empty:
            self.close()
            raise UploadIdleError(
                f"no upload message for {self.idle_s:g} s (the server's upload idle timeout): "
                "send the image's chunks without pausing"
            ) from None
        if item is _END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def __iter__(self) -> Iterator[Any]:
        while (message := self.next()) is not None:
            yield message

    def close(self) -> None:
        """Stop handing messages over (the helper ends when the call does)."""
        self._stop.set()


class Uploads:
    """The server's uploads in progress: how many, and the bytes they reserve.

    Args:
        max_uploads: streams at once.
        max_bytes: bytes all uploads may reserve together.
    """

    def __init__(self, max_uploads: int, max_bytes: int) -> None:
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._streams = 0
        self._bytes = 0

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """One upload stream's slot (ResourceError when ``max_uploads`` are in progress)."""
        with self._lock:
            if self._streams >= self.max_uploads:
                raise ResourceError(
                    f"{self.max_uploads} image uploads are in progress, the server's limit "
                    "(max_uploads): send again shortly"
                )
            self._streams += 1
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget while an image is read (UploadBudgetError if the
        uploads in progress already hold too much for it)."""
        with self._lock:
            if self._bytes + nbytes > self.max_bytes:
                raise UploadBudgetError(
                    f"an image of {size(nbytes)} beside the {size(self._bytes)} that uploads in "
                    f"progress hold is over the server's upload budget of {size(self.max_bytes)} "
                    "(max_upload_bytes_total): send it again shortly"
                )
            self._bytes += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._bytes -= nbytes

    @property
    def held(self) -> tuple[int, int]:
        """(streams in progress, bytes reserved)."""
        with self._lock:
            return self._streams, self._bytes
