"""A recorded list of interactions as JSON, so a correction can be saved, shared and replayed.

Format (version 1), UTF-8 JSON::

    {
      "format": "medrefine-interactions",
      "version": 1,
      "interactions": [
        {"kind": "refine", "marks": [
          {"type": "scribble", "label": 1, "points": [[12, 20, 30], [12, 24, 33]], "radius": 1},
          {"type": "click", "label": 0, "point": [12, 40, 10], "radius": 2},
          {"type": "box", "label": 2, "start": [8, 10, 10], "stop": [20, 30, 30]},
          {"type": "paint", "label": 1, "pixels": [[3, 4, 5], [3, 4, 6]]}
        ]},
        {"kind": "add_class", "class_name": "lesion"},
        {"kind": "undo"}, {"kind": "redo"}, {"kind": "reset"}
      ]
    }

Coordinates are integer indices in array order, ``(y, x)`` or ``(z, y, x)``, as in
:mod:`medrefine.types`; a ``refine`` entry lists the marks added before that refine. A
``Session.history`` holds ``refine``, ``add_class`` and ``reset`` entries (an undone step is not
in it); ``undo`` and ``redo`` entries are for logs a viewer keeps of every action.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from medrefine.errors import InputError
from medrefine.io._common import atomic_write, existing
from medrefine.types import Box, Click, Mark, Paint, Scribble

FORMAT = "medrefine-interactions"
VERSION = 1
Kind = Literal["refine", "add_class", "undo", "redo", "reset"]
KINDS: tuple[str, ...] = ("refine", "add_class", "undo", "redo", "reset")


@dataclass(frozen=True)
class RecordedInteraction:
    """One entry of an interactions file: ``kind``, the marks of a ``refine``, the name of an
    ``add_class``."""

    kind: Kind
    marks: tuple[Mark, ...] = ()
    class_name: str = ""


class _HistoryEntry(Protocol):
    """What :func:`save_interactions` reads of an entry (a :class:`medrefine.records.Interaction`
    has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def marks(self) -> tuple[Mark, ...]: ...
    @property
    def class_name(self) -> str: ...


def mark_to_json(mark: Mark) -> dict[str, Any]:
    """One mark as a JSON object (see the module docstring)."""
    if isinstance(mark, Scribble):
        points = [list(p) for p in mark.points]
        return {"type": "scribble", "label": mark.label, "points": points, "radius": mark.radius}
    if isinstance(mark, Click):
        return {
            "type": "click",
            "label": mark.label,
            "point": list(mark.point),
            "radius": mark.radius,
        }
    if isinstance(mark, Box):
        return {
            "type": "box",
            "label": mark.label,
            "start": list(mark.start),
            "stop": list(mark.stop),
        }
    return {"type": "paint", "label": mark.label, "pixels": mark.pixels.tolist()}


def mark_from_json(obj: Any) -> Mark:
    """The mark a JSON object describes; raises :class:`InputError` on a malformed one."""
    if not isinstance(obj, dict) or "label" not in obj:
        raise InputError(f"a mark must be an object with a type and a label, got {obj!r}")
    kind = obj.get("type")
    try:
        if kind == "scribble":
            return Scribble(obj["label"], obj["points"], obj.get("radius", 1))
        if kind == "click":
            return Click(obj["label"], obj["point"], obj.get("radius", 2))
        if kind == "box":
            return Box(obj["label"], obj["start"], obj["stop"])
        if kind == "paint":
            return Paint(obj["label"], obj["pixels"])
    except KeyError as exc:
        raise InputError(f"a {kind} mark needs {exc.args[0]!r}") from exc
    raise InputError(f"unknown mark type {kind!r} (scribble, click, box or paint)")


def _entry_to_json(entry: _HistoryEntry | RecordedInteraction) -> dict[str, Any]:
    if entry.kind not in KINDS:
        raise InputError(f"unknown interaction kind {entry.kind!r} ({', '.join(KINDS)})")
    out: dict[str, Any] = {"kind": entry.kind}
    if entry.kind == "refine":
        out["marks"] = [mark_to_json(m) for m in entry.marks]
    if entry.kind == "add_class":
        out["class_name"] = entry.class_name
    return out


def save_interactions(
    path: str | Path, history: Iterable[_HistoryEntry | RecordedInteraction]
) -> Path:
    """Write ``history`` (e.g. ``session.history``) as a version-1 interactions file."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "interactions": [_entry_to_json(e) for e in history],
    }
    text = json.dumps(doc, indent=1)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def _entry_from_json(obj: Any) -> RecordedInteraction:
    if not isinstance(obj, dict) or obj.get("kind") not in KINDS:
        raise InputError(f"an interaction needs a kind among {', '.join(KINDS)}, got {obj!r}")
    kind = obj["kind"]
    if kind == "refine":
        marks = obj.get("marks")
        if not isinstance(marks, list) or not marks:
            raise InputError("a refine interaction needs a non-empty list of marks")
        return RecordedInteraction("refine", tuple(mark_from_json(m) for m in marks))
    if kind == "add_class":
        name = obj.get("class_name")
        if not isinstance(name, str) or not name:
            raise InputError("an add_class interaction needs a non-empty class_name")
        return RecordedInteraction("add_class", class_name=name)
    return RecordedInteraction(kind)


def load_interactions(path: str | Path) -> tuple[RecordedInteraction, ...]:
    """Read an interactions file.

    Raises:
        NotFoundError: no such file. InputError: not JSON, another format or version, or a
        malformed entry (the message names the file and the entry's index).
    """
    p = existing(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a JSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f'{p}: not a medrefine interactions file (no "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise InputError(
            f"{p}: interactions format version {doc.get('version')!r}; this reads {VERSION}"
        )
    entries = doc.get("interactions")
    if not isinstance(entries, list):
        raise InputError(f'{p}: "interactions" must be a list')
    out = []
    for i, obj in enumerate(entries):
        try:
            out.append(_entry_from_json(obj))
        except InputError as exc:
            raise InputError(f"{p}: interaction {i}: {exc}") from exc
    return tuple(out)
