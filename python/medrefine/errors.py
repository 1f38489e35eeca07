"""Typed errors. Each maps to one gRPC status code in the server.

| exception            | meaning                                        | gRPC status          |
|----------------------|------------------------------------------------|----------------------|
| InputError           | bad argument: shape, dtype, NaN, out of bounds  | INVALID_ARGUMENT     |
| StateError           | call not valid now (refine before set_image)    | FAILED_PRECONDITION  |
| NotFoundError        | unknown model, session or file                 | NOT_FOUND            |
| ResourceError        | a size or memory budget would be exceeded       | RESOURCE_EXHAUSTED   |
| UnsupportedModelError| a network cannot be split or converted          | INVALID_ARGUMENT     |
| CancelledError       | the caller stopped a running call               | CANCELLED            |
| NumericalError       | a refine diverged (non-finite head or logits)   | INVALID_ARGUMENT     |
| MissingExtraError    | an optional extra (``medrefine[io]``) is absent | INVALID_ARGUMENT     |

NumericalError is an InputError: a diverging refine comes from the settings the caller chose
(a learning rate too large for the head, say), not from a fault of the server, so it maps to
INVALID_ARGUMENT, never INTERNAL. The step is rolled back before it is raised.
"""

from __future__ import annotations


class MedrefineError(Exception):
    """Base class of every error medrefine raises on purpose."""


class InputError(MedrefineError, ValueError):
    """An argument is invalid; the message names it and the problem."""


class StateError(MedrefineError, RuntimeError):
    """The object is not in a state that allows this call (e.g. refine before set_image)."""


class NotFoundError(MedrefineError, KeyError):
    """A named thing (model, session, file) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ResourceError(MedrefineError, MemoryError):
    """A configured budget (bytes, sessions, message size) would be exceeded."""


class UnsupportedModelError(MedrefineError, ValueError):
    """A network cannot be split at the requested point or converted (names the operator)."""


class CancelledError(MedrefineError):
    """The caller stopped a running call (a progress callback raised it, or a deadline passed);
    the object is exactly as it was before the call."""


class NumericalError(InputError):
    """A refine produced non-finite head weights or logits (e.g. ``RefineConfig(lr=1e30)``);
    the step was rolled back, so the session is exactly as before the call."""


class MissingExtraError(InputError, ImportError):
    """A call needs an optional part of medrefine that is not installed (DICOM needs the ``io``
    extra, ``medrefine serve`` the ``serve`` extra, figures the ``viz`` extra); the message
    names the extra and the ``pip install`` line. Also an :class:`ImportError`, so code that
    falls back on a missing package keeps working.

    Attributes:
        extra: the extra that provides it (``"io"``, ``"serve"``, ``"viz"``, ...).
        name: the top-level module that could not be imported (``"pydicom"``).
    """

    def __init__(self, message: str, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.name = module


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (the exception's type
    name when it has none): what a typed error quotes of a library's error, whose messages
    (libpq's, protobuf's, ONNX Runtime's) run on with hints and traces."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
