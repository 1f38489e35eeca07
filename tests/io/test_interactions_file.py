"""The interactions JSON: every mark and kind survives a round trip; malformed files are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medrefine as mr
from medrefine.errors import InputError, NotFoundError
from medrefine.io import RecordedInteraction, load_interactions, save_interactions

MARKS = (
    mr.Scribble(1, [(12, 20, 30), (12, 24, 33)], 2),
    mr.Click(0, (12, 40, 10), 3),
    mr.Box(2, (8, 10, 10), (20, 30, 30)),
    mr.Paint(1, np.array([[3, 4, 5], [3, 4, 6]])),
)


def test_every_kind_and_mark_survives_a_round_trip(tmp_path: Path) -> None:
    steps = [
        RecordedInteraction("refine", MARKS),
        RecordedInteraction("add_class", class_name="lesion"),
        RecordedInteraction("undo"),
        RecordedInteraction("redo"),
        RecordedInteraction("reset"),
    ]
    back = load_interactions(save_interactions(tmp_path / "i.json", steps))
    assert [s.kind for s in back] == ["refine", "add_class", "undo", "redo", "reset"]
    assert back[1].class_name == "lesion"
    assert back[0].marks[:3] == MARKS[:3]  # Paint compares by label only: check its pixels
    assert isinstance(back[0].marks[3], mr.Paint)
    np.testing.assert_array_equal(back[0].marks[3].pixels, MARKS[3].pixels)
    doc = json.loads((tmp_path / "i.json").read_text())
    assert doc["format"] == "medrefine-interactions" and doc["version"] == 1
    assert doc["interactions"][0]["marks"][0] == {
        "type": "scribble",
        "label": 1,
        "points": [[12, 20, 30], [12, 24, 33]],
        "radius": 2,
    }


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "other", "version": 1, "interactions": []}, "not a medrefine interactions"),
        ({"format": "medrefine-interactions", "version": 2, "interactions": []}, "version 2"),
        ({"format": "medrefine-interactions", "version": 1, "interactions": {}}, "must be a list"),
        (
            {"format": "medrefine-interactions", "version": 1, "interactions": [{"kind": "zoom"}]},
            "interaction 0: an interaction needs a kind",
        ),
        (
            {
                "format": "medrefine-interactions",
                "version": 1,
                "interactions": [
                    {"kind": "reset"},
                    {"kind": "refine", "marks": [{"type": "click", "label": 1}]},
                ],
            },
            "interaction 1: a click mark needs 'point'",
        ),
        (
            {
                "format": "medrefine-interactions",
                "version": 1,
                "interactions": [{"kind": "refine", "marks": [{"type": "lasso", "label": 1}]}],
            },
            "unknown mark type 'lasso'",
        ),
        (
            {
                "format": "medrefine-interactions",
                "version": 1,
                "interactions": [
                    {"kind": "refine", "marks": [{"type": "scribble", "label": 1, "points": 7}]}
                ],
            },
            "interaction 0: scribble points must be a sequence",
        ),
        (
            {
                "format": "medrefine-interactions",
                "version": 1,
                "interactions": [
                    {
                        "kind": "refine",
                        "marks": [{"type": "paint", "label": 1, "pixels": [[1, 2], [3]]}],
                    }
                ],
            },
            "interaction 0: paint pixels must be",
        ),
        (
            {
                "format": "medrefine-interactions",
                "version": 1,
                "interactions": [{"kind": "add_class"}],
            },
            "needs a non-empty class_name",
        ),
    ],
)
def test_malformed_files_name_the_file_and_the_entry(
    tmp_path: Path, doc: object, message: str
) -> None:
    path = _write(tmp_path / "bad.json", doc)
    with pytest.raises(InputError, match=message) as info:
        load_interactions(path)
    assert str(path) in str(info.value)


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="not a JSON file"):
        load_interactions(tmp_path / "x.json")
    with pytest.raises(NotFoundError):
        load_interactions(tmp_path / "none.json")
