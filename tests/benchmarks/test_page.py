"""A bench command writes its tables into a page's marked section and nowhere else."""

from __future__ import annotations

import datetime
import shlex
from pathlib import Path

import pytest
from rich.table import Table

from medrefine.cli import main
from medrefine.errors import InputError
from medrefine_lab.benchmarks.page import (
    Page,
    begin_marker,
    end_marker,
    markdown_table,
    replace_section,
)


def _page(tmp_path: Path, *sections: str) -> Path:
    text = "# Speed\n\nOwn words.\n\n"
    for name in sections:
        text += f"## {name}\n\n{begin_marker(name)}\nold {name} table\n{end_marker(name)}\n\n"
    page = tmp_path / "page.md"
    page.write_text(text + "Closing words.\n")
    return page


def test_only_the_named_section_changes(tmp_path: Path) -> None:
    page = _page(tmp_path, "engine", "grow")
    replace_section(page, "grow", "| a |\n|---|\n| 1 |\n")
    text = page.read_text()
    assert "old engine table" in text and "old grow table" not in text
    assert f"{begin_marker('grow')}\n| a |\n|---|\n| 1 |\n{end_marker('grow')}\n" in text
    assert text.startswith("# Speed\n\nOwn words.\n") and text.endswith("Closing words.\n")
    replace_section(page, "grow", "| b |\n")  # a second write replaces the first
    assert "| a |" not in page.read_text() and "| b |" in page.read_text()


@pytest.mark.parametrize("sections", [(), ("grow", "grow")])
def test_a_page_without_one_pair_of_markers_is_refused_and_left_alone(
    tmp_path: Path, sections: tuple[str, ...]
) -> None:
    page = _page(tmp_path, *sections)
    before = page.read_text()
    with pytest.raises(InputError, match="must hold the section 'grow' once") as err:
        replace_section(page, "grow", "new\n")
    assert begin_marker("grow") in str(err.value) and "add them where the table belongs" in str(
        err.value
    )
    assert page.read_text() == before


def test_a_missing_page_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the page"):
        replace_section(tmp_path / "absent.md", "grow", "x\n")


def test_a_rich_table_becomes_a_pipe_table() -> None:
    table = Table(title="region growing")
    table.add_column("scene")
    table.add_column("median ms")
    table.add_row("512x512", "3.1")
    table.add_row("a|b", "4")
    assert markdown_table(table) == (
        "region growing:\n\n| scene | median ms |\n|---|---|\n| 512x512 | 3.1 |\n| a\\|b | 4 |\n"
    )


def test_without_page_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = Page(None, "grow")
    page.text("| a |")
    page.write()
    assert capsys.readouterr().out == "| a |\n"
    assert list(tmp_path.iterdir()) == []


def test_tee_keeps_what_was_printed(capsys: pytest.CaptureFixture[str]) -> None:
    page = Page(None, "memory")
    with page.tee(fence=True):
        print("session on (128, 256, 256)")
    assert page.parts == ["```text\nsession on (128, 256, 256)\n```\n"]
    assert capsys.readouterr().out == "session on (128, 256, 256)\n"


def test_the_command_writes_its_section_with_how_it_was_measured(tmp_path: Path) -> None:
    page = _page(tmp_path, "grow-small", "geodesic")
    argv = ["bench", "grow", "--size2d", "24", "--size3d", "8", "--repeats", "1"]
    argv += ["--page", f"{page}#grow-small"]
    assert main(argv) == 0
    text = page.read_text()
    section = text[text.index(begin_marker("grow-small")) : text.index(end_marker("grow-small"))]
    assert f"`{shlex.join(['medrefine', *argv])}`" in section  # the command that regenerates it
    assert datetime.date.today().isoformat() in section and "CPU cores" in section
    assert "| scene | strokes | criterion |" in section and "| 24x24 |" in section
    assert "| 8x8x8 |" in section
    assert "old geodesic table" in text and "old grow-small table" not in text
