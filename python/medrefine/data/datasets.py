"""Readers for the three dataset layouts (DSB nuclei, MSD hippocampus, HC18 fetal head).

Every dataset folder holds a ``cases.csv`` with a ``suggested_split`` column (``train``/``test``).
The layout is recognised from that file's header. Images come back as the user would load them:

- DSB 2018 nuclei: ``(H, W)`` uint8 grey or ``(3, H, W)`` uint8 RGB; labels binarised to
  ``{0 background, 1 nucleus}``.
- HC18 fetal head: ``(H, W)`` uint8 grey; labels ``{0, 1 head}``; spacing from ``pixel_size_mm``.
- MSD hippocampus: ``(D, H, W)`` float32 in nibabel's voxel-index order (i, j, k), labels
  ``{0, 1 anterior, 2 posterior}`` as uint8, spacing and affine from the NIfTI header.

A folder with a ``dataset.json`` instead is read as the nnU-Net raw layout
(:mod:`medrefine.data.nnunet`): a team's own cases, in any format ``read_volume`` reads.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrefine.data import nnunet
from medrefine.errors import InputError
from medrefine.io import read_nifti, read_png, read_volume


@dataclass(frozen=True)
class Case:
    """One image with ground truth.

    Attributes:
        case_id: identifier from ``cases.csv``.
        image: ``(H, W)``, ``(3, H, W)`` or ``(D, H, W)``; dtype as stored.
        label: integer label map, same spatial shape, values ``0..num_classes-1``.
        spacing: physical size of one pixel/voxel per spatial axis, in mm (array order).
        group: acquisition group where the dataset has one (DSB), else ``""``.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]
    group: str = ""
    affine: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder: ``kind`` is ``"dsb2018"``, ``"hc18"``, ``"msd_hippocampus"`` or
    ``"nnunet"``; ``class_names`` by label (nnU-Net's ``dataset.json``; empty for the others)."""

    root: Path
    kind: str
    rows: tuple[dict[str, str], ...]
    num_classes: int
    spatial_dims: int
    class_names: tuple[str, ...] = ()
    nnunet: nnunet.NnunetLayout | None = field(default=None, compare=False, repr=False)

    def ids(self, split: str | None = None, groups: tuple[str, ...] | None = None) -> list[str]:
        """Case ids of ``split`` (``"train"``, ``"test"`` or None for all), optionally by group."""
        key = {"dsb2018": "image_id", "hc18": "image"}.get(self.kind, "case")
        if self.kind == "nnunet":
            groups = None  # the layout has no acquisition groups
            if split == "test" and all(r["suggested_split"] == "train" for r in self.rows):
                split = "train"  # imagesTr alone: evaluate on its cases
        return [
            r[key]
            for r in self.rows
            if (split is None or r["suggested_split"] == split)
            and (groups is None or r.get("group", "") in groups)
        ]

    def load(self, case_id: str) -> Case:
        """Read one case from disk."""
        if self.nnunet is not None:
            image, label, spacing, affine = nnunet.load_case(self.root, self.nnunet, case_id)
            return Case(case_id, image, label, spacing, affine=affine)
        if self.kind == "dsb2018":
            row = next(r for r in self.rows if r["image_id"] == case_id)
            image = read_png(self.root / "images" / f"{case_id}.png")
            label = (read_png(self.root / "labels" / f"{case_id}.png") > 0).astype(np.uint8)
            return Case(case_id, image, label, (1.0, 1.0), row["group"])
        if self.kind == "hc18":
            row = next(r for r in self.rows if r["image"] == case_id)
            image = read_png(self.root / "images" / case_id)
            label = read_png(self.root / "masks" / case_id.replace(".png", "_mask.png")).astype(
                np.uint8
            )
            px = float(row["pixel_size_mm"])
            return Case(case_id, image, label, (px, px))
        image, spacing, affine = read_nifti(self.root / "images" / f"{case_id}.nii.gz")
        label = np.rint(read_nifti(self.root / "labels" / f"{case_id}.nii.gz")[0]).astype(np.uint8)
        return Case(case_id, image, label, spacing, affine=affine)

    def iter(self, split: str | None = None) -> Iterator[Case]:
        """Load the cases of ``split`` one at a time."""
        for case_id in self.ids(split):
            yield self.load(case_id)


def open_dataset(root: str | Path) -> Dataset:
    """Open a dataset folder; raises :class:`InputError` if its layout is not recognised."""
    root = Path(root)
    if nnunet.is_nnunet(root):
        return _open_nnunet(root)
    csv_path = root / "cases.csv"
    if not csv_path.is_file():
        raise InputError(f"{root} is not a dataset folder: it has no cases.csv or dataset.json")
    with csv_path.open(newline="") as fh:
        rows = tuple(csv.DictReader(fh))
    header = set(rows[0]) if rows else set()
    if "image_id" in header:
        return Dataset(root, "dsb2018", rows, 2, 2)
    if "head_circumference_mm" in header:
        return Dataset(root, "hc18", rows, 2, 2)
    if "voxels_anterior_1" in header:
        return Dataset(root, "msd_hippocampus", rows, 3, 3)
    raise InputError(f"{csv_path}: unknown dataset layout (columns {sorted(header)})")


def _open_nnunet(root: Path) -> Dataset:
    layout = nnunet.scan(root)
    first = layout.rows[0]
    label = read_volume(root / f"labels{first['folder']}" / f"{first['case']}{layout.file_ending}")
    return Dataset(
        root,
        "nnunet",
        layout.rows,
        len(layout.class_names),
        label.array.ndim,
        layout.class_names,
        layout,
    )
