"""What a session and a site record, as both an in-process and a remote caller receive it:
:class:`Interaction` (one entry of a session's history), :class:`SiteVersion`,
:class:`Validation` and :class:`SiteReport`. numpy only, so that :mod:`medrefine.client`
returns them without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from medrefine.errors import InputError
from medrefine.packed import PackedMask
from medrefine.types import Mark, RefineResult

_NO_MASK = np.zeros(0, dtype=np.uint8)
_NO_MASK.setflags(write=False)


class Interaction:
    """One entry of :attr:`medrefine.Session.history` (immutable).

    Attributes:
        kind: ``"refine"``, ``"add_class"`` or ``"reset"``.
        marks: the marks added by this interaction (refine only).
        result: the refinement's result (refine only); each access returns a new copy of its
            mask (kept compressed here), and ``wrong_where`` is read-only.
        class_name: the added class (add_class only).
    """

    __slots__ = ("_mask", "_result", "class_name", "kind", "marks")
    kind: Literal["refine", "add_class", "reset"]
    marks: tuple[Mark, ...]
    class_name: str

    def __init__(
        self,
        kind: Literal["refine", "add_class", "reset"],
        marks: tuple[Mark, ...] = (),
        result: RefineResult | None = None,
        class_name: str = "",
        *,
        packed: PackedMask | None = None,
    ) -> None:
        if kind not in ("refine", "add_class", "reset"):
            raise InputError(f"interaction kind must be refine, add_class or reset, got {kind!r}")
        mask: PackedMask | None = None
        if result is not None:
            mask = packed if packed is not None else PackedMask.pack(result.mask)
            where = np.array(result.wrong_where, dtype=np.int64)
            where.setflags(write=False)
            result = replace(result, mask=_NO_MASK, wrong_where=where)
        for name, value in (
            ("kind", kind),
            ("marks", tuple(marks)),
            ("class_name", class_name),
            ("_result", result),
            ("_mask", mask),
        ):
            object.__setattr__(self, name, value)

    @property
    def result(self) -> RefineResult | None:
        stored: RefineResult | None = self._result  # type: ignore[attr-defined]
        packed: PackedMask | None = self._mask  # type: ignore[attr-defined]
        if stored is None or packed is None:
            return None
        return replace(stored, mask=packed.unpack())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Interaction is immutable; cannot set {name}")

    def _key(self) -> tuple[object, ...]:
        return (self.kind, self.marks, self.class_name, self._result)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interaction) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.kind, self.class_name, len(self.marks)))

    def __repr__(self) -> str:
        return (
            f"Interaction(kind={self.kind!r}, marks={self.marks!r}, result={self.result!r}, "
            f"class_name={self.class_name!r})"
        )


@dataclass(frozen=True)
class Validation:
    """The held-out check of one site version.

    Attributes:
        images: accepted images checked.
        network: estimated Dice of the network's head on each held-out image, in order.
        site: estimated Dice of the site head fitted without that image.
        passed: the site head may be used.
        reason: why it may or may not, in a sentence.
    """

    images: int
    network: tuple[float, ...]
    site: tuple[float, ...]
    passed: bool
    reason: str

    @property
    def gain(self) -> float:
        """Mean estimated Dice of the site head minus the network's (0 with no image)."""
        return float(np.mean(self.site) - np.mean(self.network)) if self.images else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "images": self.images,
            "network": list(self.network),
            "site": list(self.site),
            "passed": self.passed,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Validation:
        return cls(
            int(data["images"]),  # type: ignore[call-overload]
            tuple(float(v) for v in data["network"]),  # type: ignore[attr-defined]
            tuple(float(v) for v in data["site"]),  # type: ignore[attr-defined]
            bool(data["passed"]),
            str(data["reason"]),
        )


@dataclass(frozen=True)
class SiteVersion:
    """One version of a site, as :meth:`Site.report` lists it.

    Attributes:
        version: its number (newer is larger).
        kind: ``"accept"``, ``"rollback"`` or ``"reset"``.
        images: accepted images it holds.
        class_names: the site's classes, by label.
        created_at: seconds since the epoch.
        validation: its held-out check (None while its head is being fitted).
    """

    version: int
    kind: str
    images: int
    class_names: tuple[str, ...]
    created_at: float
    validation: Validation | None

    @property
    def in_use(self) -> bool:
        """New sessions start from this version's head (its check passed)."""
        return self.validation is not None and self.validation.passed


@dataclass(frozen=True)
class SiteReport:
    """A site's record: where it lives, its model, and every kept version (oldest first)."""

    where: str
    model: str
    versions: tuple[SiteVersion, ...]

    @property
    def current(self) -> SiteVersion | None:
        return self.versions[-1] if self.versions else None

    def __str__(self) -> str:
        lines = [f"site of {self.model} ({self.where})"]
        for v in self.versions:
            check = "fitting" if v.validation is None else v.validation.reason
            use = "in use" if v.in_use else "not used"
            lines.append(f"  v{v.version} {v.kind}: {v.images} images, {use}: {check}")
        return "\n".join(lines)
