"""SessionLike: what :class:`medrefine.Session` and :class:`medrefine.client.RemoteSession` share.

Code written against :class:`SessionLike` (a viewer, a simulated user, a script) runs on a
session in this process or on one served by ``medrefine serve``, unchanged. numpy only, so that
a client without the engine can name it.

Both classes have more than the protocol, on purpose; ``tests/test_session_like.py`` fails when
either gains or loses a public name that is not listed here:

- Only :class:`~medrefine.Session` (:data:`LOCAL_ONLY`): the objects a remote caller cannot
  hold, ``model`` (the :class:`~medrefine.SplitModel`), ``config``, ``limits``, ``cache``,
  ``device``, ``backend`` and ``site``.
- Only :class:`~medrefine.client.RemoteSession` (:data:`REMOTE_ONLY`): the connection and what
  it needs, ``model`` (the served model's name), ``preset``, ``progress``, ``timeout``,
  ``chunk_bytes``, ``session_id``, ``uploaded``, ``resumed``, ``last_mask_bytes``,
  ``reconciled``, ``site_version``, ``sync()``, ``get_mask()`` (the whole mask from the server,
  not from deltas), ``mask_version`` (the version of the mask the client holds),
  ``close_session()`` (end the server's session), and ``close()`` with ``with`` (the channel).
  An in-process session holds no connection, so it has no ``close``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from medrefine.records import Interaction, SiteVersion
from medrefine.types import Mark, RefineProgress, RefineResult, Volume


class SessionLike(Protocol):
    """One image, its marks, refinement, undo and redo; in process or remote.

    Masks are label arrays of the image's spatial shape, array order ``(y, x)`` or
    ``(z, y, x)``, uint8 (int32 beyond 256 classes); every mask returned is a new array.
    """

    def set_image(
        self, image: np.ndarray | Volume, *, channels_last: bool | None = None
    ) -> np.ndarray:
        """Start on ``image`` (``(H, W)``, ``(C, H, W)``, ``(D, H, W)`` or ``(C, D, H, W)``, or a
        :class:`~medrefine.types.Volume`) and return the network's own mask."""
        ...

    def add(self, mark: Mark) -> None:
        """Queue a mark for the next :meth:`refine` (checked now)."""
        ...

    def refine(self, progress: Callable[[RefineProgress], None] | None = None) -> RefineResult:
        """Fine-tune the head on every mark so far; ``progress`` is called before every
        gradient step, and raising from it cancels the refine (the session stays as before)."""
        ...

    def undo(self) -> np.ndarray:
        """Go back one interaction; returns the restored mask."""
        ...

    def redo(self) -> np.ndarray:
        """Re-apply the last undone interaction; returns its mask."""
        ...

    def reset(self) -> np.ndarray:
        """Back to the network's own mask, no marks (undoable); returns it."""
        ...

    def add_class(self, name: str) -> int:
        """Add a class the network never learned; returns its label."""
        ...

    def accept(self) -> SiteVersion:
        """Record the current mask as the answer for this image in the session's site."""
        ...

    @property
    def mask(self) -> np.ndarray:
        """The current mask."""
        ...

    @property
    def marks(self) -> tuple[Mark, ...]:
        """Every mark the current mask was refined on, then the pending ones."""
        ...

    @property
    def pending(self) -> tuple[Mark, ...]:
        """Marks added since the last refine."""
        ...

    @property
    def history(self) -> tuple[Interaction, ...]:
        """Every interaction that led to the current mask, oldest first."""
        ...

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` would succeed."""
        ...

    @property
    def can_redo(self) -> bool:
        """Whether :meth:`redo` would succeed."""
        ...

    @property
    def num_classes(self) -> int:
        """Classes the head predicts now (grows with :meth:`add_class`)."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class label."""
        ...

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of the current image."""
        ...

    @property
    def head_source(self) -> tuple[str, str]:
        """Which head the current image started from, and why."""
        ...


#: The protocol's members (methods and properties), by name.
MEMBERS: frozenset[str] = frozenset(n for n in vars(SessionLike) if not n.startswith("_"))

#: Public names only :class:`medrefine.Session` has.
LOCAL_ONLY: frozenset[str] = frozenset(
    {"model", "config", "limits", "cache", "device", "backend", "site"}
)

#: Public names only :class:`medrefine.client.RemoteSession` has.
REMOTE_ONLY: frozenset[str] = frozenset(
    {
        "model",
        "preset",
        "progress",
        "timeout",
        "chunk_bytes",
        "session_id",
        "uploaded",
        "resumed",
        "last_mask_bytes",
        "reconciled",
        "site_version",
        "sync",
        "get_mask",
        "mask_version",
        "close_session",
        "close",
    }
)


if TYPE_CHECKING:  # mypy checks that both classes satisfy the protocol, signatures included
    from medrefine.client import RemoteSession
    from medrefine.engine.session.session import Session

    def _local_conforms(session: Session) -> SessionLike:
        return session

    def _remote_conforms(session: RemoteSession) -> SessionLike:
        return session
