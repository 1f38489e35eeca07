"""Bench tables written into a documentation page, so that published figures are regenerated.

``medrefine bench NAME ... --page docs/benchmarks.md`` prints as before and also replaces the
page's section between the two marker lines

    <!-- medrefine bench NAME: begin (generated; edit the command, not this text) -->
    <!-- medrefine bench NAME: end -->

with a "How measured" line (the command, the machine, the date, the load average) and the
command's tables in Markdown. ``--page PATH#SECTION`` writes section ``SECTION`` instead of
``NAME`` (one command, several configurations: ``conformance`` and ``conformance-full``).
Text outside the markers is the page's own and is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from medrefine.errors import InputError

if TYPE_CHECKING:  # rich is imported when a table is printed (memory's children never do)
    from rich.console import Console
    from rich.table import Table


def begin_marker(section: str) -> str:
    """The line that opens ``section`` on a page."""
    return f"<!-- medrefine bench {section}: begin (generated; edit the command, not this text) -->"


def end_marker(section: str) -> str:
    """The line that closes ``section`` on a page."""
    return f"<!-- medrefine bench {section}: end -->"


def replace_section(page: Path, section: str, body: str) -> None:
    """Replace what lies between ``section``'s two marker lines on ``page`` with ``body``.

    Raises :class:`InputError` when the page is missing or does not hold both markers once, in
    order (the remedy, adding them where the table belongs, is in the message).
    """
    begin, end = begin_marker(section), end_marker(section)
    try:
        text = page.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the page {page}: {exc.strerror or exc}") from None
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    stops = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(stops) != 1 or stops[0] < starts[0]:
        raise InputError(
            f"{page} must hold the section {section!r} once, as the two lines\n{begin}\n{end}\n"
            f"(found {len(starts)} begin and {len(stops)} end markers); add them where the "
            "table belongs"
        )
    new = "".join(lines[: starts[0] + 1]) + body.rstrip("\n") + "\n" + "".join(lines[stops[0] :])
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(page)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    """A rich :class:`Table` as a Markdown pipe table, its title (if any) on the line above."""
    head = [_cell(c.header) for c in table.columns]
    columns = [[_cell(v) for v in c.cells] for c in table.columns]
    rows = list(zip(*columns, strict=True)) if columns else []
    lines = [f"{table.title}:", ""] if table.title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine_line() -> str:
    """The machine, in the words every page's "How measured" line uses."""
    from medrefine_lab.eval.report import machine

    return f"{machine()}, {os.cpu_count()} CPU cores"


def load_average() -> str:
    """The load average over 1, 5 and 15 minutes, e.g. ``1.02 / 1.10 / 1.31 (1 / 5 / 15 min)``."""
    if not hasattr(os, "getloadavg"):
        return "not available"
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"


def command_line(argv: list[str] | None = None) -> str:
    """The command as a person would type it (``medrefine bench ...``): ``argv`` after the
    program's name, this process's arguments if None."""
    return shlex.join(["medrefine", *(sys.argv[1:] if argv is None else argv)])


def how_measured(command: str, machine: str, date: str, load: str | None = None) -> str:
    """The "How measured" line that opens every generated section."""
    tail = f"; load average {load}" if load else ""
    return f"**How measured.** `{command}` on {machine}; {date}{tail}.\n"


class _Tee(io.TextIOBase):
    """Writes to ``out`` and keeps a copy."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.kept = io.StringIO()

    def write(self, s: str) -> int:
        self.kept.write(s)
        return self.out.write(s)

    def flush(self) -> None:
        self.out.flush()


@dataclass
class Page:
    """What one bench command publishes: Markdown parts, written to ``path`` by :meth:`write`.

    ``path`` None (no ``--page``) makes :meth:`write` a no-op; :meth:`table` and :meth:`tee`
    print to the terminal either way.
    """

    path: Path | None
    section: str
    argv: list[str] | None = None
    parts: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace, name: str) -> Page:
        """The page of ``--page PATH[#SECTION]`` (section ``name`` unless given); the command
        line is ``args.argv`` (set by :func:`medrefine.cli.main`) or this process's."""
        spec: str | None = getattr(args, "page", None)
        argv: list[str] | None = getattr(args, "argv", None)
        if not spec:
            return cls(None, name, argv)
        path, _, section = spec.partition("#")
        return cls(Path(path), section or name, argv)

    def table(self, table: Table, console: Console | None = None) -> None:
        """Print ``table`` and keep it as Markdown."""
        from rich.console import Console

        (console or Console(width=160)).print(table)
        self.parts.append(markdown_table(table))

    def text(self, text: str) -> None:
        """Print ``text`` and keep it (Markdown)."""
        print(text, flush=True)
        self.parts.append(text.rstrip("\n") + "\n")

    @contextlib.contextmanager
    def tee(self, fence: bool = False) -> Iterator[None]:
        """Keep everything printed inside the block (in a ```` ```text ```` block if ``fence``)."""
        tee = _Tee(sys.stdout)
        try:
            with contextlib.redirect_stdout(tee):
                yield
        finally:
            kept = tee.kept.getvalue().strip("\n")
            if kept:
                self.parts.append(f"```text\n{kept}\n```\n" if fence else kept + "\n")

    def write(self, machine: str | None = None, date: str | None = None, load: bool = True) -> None:
        """Write the kept parts under a "How measured" line into the page's section."""
        if self.path is None:
            return
        head = how_measured(
            command_line(self.argv),
            machine or machine_line(),
            date or datetime.date.today().isoformat(),
            load_average() if load else None,
        )
        replace_section(self.path, self.section, "\n".join([head, *self.parts]))
        print(f"wrote section {self.section!r} of {self.path}", file=sys.stderr)


def add_page_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--page PATH[#SECTION]`` to a bench command's parser."""
    parser.add_argument(
        "--page",
        default="",
        metavar="PATH[#SECTION]",
        help="also write the tables into this page, between the markers of SECTION (default: "
        "the command's name), e.g. docs/benchmarks.md",
    )
