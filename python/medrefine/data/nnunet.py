"""The nnU-Net raw dataset layout, so the bench runs on a team's own cases.

A folder with ``dataset.json`` (``labels``: class name -> label value, values ``0..K-1``;
``file_ending``, e.g. ``".nii.gz"`` or ``".png"``; optional ``channel_names``), images
``imagesTs/CASE_0000{file_ending}`` (one file per channel, ``_0000``, ``_0001``, ...) with ground
truth ``labelsTs/CASE{file_ending}``, and likewise ``imagesTr/``, ``labelsTr/``. Any format
:func:`medrefine.io.read_volume` reads will do.

Splits: ``test`` is the imagesTs cases that have a label; a folder without any is evaluated on
its imagesTr cases (``Dataset.ids("test")`` gives them). ``train`` is the imagesTr cases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrefine.errors import InputError, NotFoundError
from medrefine.io import read_volume


@dataclass(frozen=True)
class NnunetLayout:
    """What ``dataset.json`` and the folders say.

    Attributes:
        class_names: by label value, background first.
        file_ending: e.g. ``".nii.gz"``.
        rows: one per labelled case: ``case``, ``suggested_split`` (``train``/``test``) and
            ``folder`` (``Ts``/``Tr``).
    """

    class_names: tuple[str, ...]
    file_ending: str
    rows: tuple[dict[str, str], ...]


def _labels(path: Path, labels: object) -> tuple[str, ...]:
    if not isinstance(labels, dict) or not labels:
        raise InputError(f'{path}: "labels" must map class names to label values')
    by_value: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                f"{path}: label {name!r} is {value!r}: only plain integer labels are read "
                "(not nnU-Net region lists)"
            )
        by_value[value] = str(name)
    if sorted(by_value) != list(range(len(by_value))):
        raise InputError(f"{path}: label values must be 0..K-1, got {sorted(by_value)}")
    return tuple(by_value[v] for v in range(len(by_value)))


def _cases(root: Path, folder: str, ending: str) -> list[str]:
    images, labels = root / f"images{folder}", root / f"labels{folder}"
    if not images.is_dir():
        return []
    suffix = "_0000" + ending
    ids = sorted(p.name[: -len(suffix)] for p in images.iterdir() if p.name.endswith(suffix))
    return [c for c in ids if (labels / f"{c}{ending}").exists()]


def is_nnunet(root: Path) -> bool:
    """Whether ``root`` has a ``dataset.json`` (the nnU-Net raw layout)."""
    return (root / "dataset.json").is_file()


def scan(root: Path) -> NnunetLayout:
    """Read ``dataset.json`` and list the labelled cases.

    Raises:
        InputError: a malformed ``dataset.json`` or no labelled case.
    """
    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{meta_path}: not a readable JSON file ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: expected a JSON object")
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise InputError(f'{meta_path}: "file_ending" must be a suffix such as ".nii.gz"')
    names = _labels(meta_path, meta.get("labels"))
    test, train = _cases(root, "Ts", ending), _cases(root, "Tr", ending)
    rows = [{"case": c, "suggested_split": "test", "folder": "Ts"} for c in test]
    rows += [{"case": c, "suggested_split": "train", "folder": "Tr"} for c in train]
    if not rows:
        raise InputError(
            f"{root}: no labelled case: expected imagesTs/CASE_0000{ending} with "
            f"labelsTs/CASE{ending} (or imagesTr/, labelsTr/)"
        )
    return NnunetLayout(names, ending, tuple(rows))


def load_case(
    root: Path, layout: NnunetLayout, case_id: str
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray | None]:
    """Image, label, spacing (mm) and affine of one case.

    The image is the channel files ``_0000``, ``_0001``, ... stacked channel-first (a file may
    hold several channels itself, e.g. an RGB PNG; one channel in all: the file's array as read);
    the label is uint8 with values ``0..K-1``.

    Raises:
        NotFoundError: an unknown case or a missing channel file. InputError: channels or label
        of another shape, or a label value without a class.
    """
    row = next((r for r in layout.rows if r["case"] == case_id), None)
    if row is None:
        raise NotFoundError(f"{root}: no labelled case {case_id!r}")
    folder, ending = row["folder"], layout.file_ending
    label_vol = read_volume(root / f"labels{folder}" / f"{case_id}{ending}")
    label = np.rint(label_vol.array).astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= len(layout.class_names)):
        raise InputError(
            f"{root}: case {case_id}: label values {int(label.min())}..{int(label.max())}, "
            f"but dataset.json names {len(layout.class_names)} classes"
        )
    images = root / f"images{folder}"
    files = [images / f"{case_id}_0000{ending}"]
    while (nxt := images / f"{case_id}_{len(files):04d}{ending}").exists():
        files.append(nxt)
    vols = [read_volume(f) for f in files]
    parts = []
    for f, vol in zip(files, vols, strict=True):
        arr = vol.array if vol.array.ndim == label.ndim + 1 else vol.array[None]
        if arr.shape[1:] != label.shape:
            raise InputError(
                f"{f}: shape {vol.array.shape} does not match its label's {label.shape}"
            )
        parts.append(arr)
    image = parts[0] if len(parts) == 1 else np.concatenate(parts)
    image = image[0] if image.shape[0] == 1 else image
    first = vols[0]
    spacing = first.spacing or label_vol.spacing or (1.0,) * label.ndim
    return image, label.astype(np.uint8), tuple(spacing), first.affine
