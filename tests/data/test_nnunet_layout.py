"""The nnU-Net raw layout made from shipped cases reads like the staged layout: same cases, same
bench figures, same card Dice; malformed folders are named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medrefine.cli import main
from medrefine.data import open_dataset
from medrefine.errors import InputError
from medrefine.samples import DATA
from medrefine_lab.eval.bench import Experiment, run_accuracy
from medrefine_lab.eval.cards import evaluate_model

HIPPO = ("hippocampus-007", "hippocampus-017")
LABELS = {"background": 0, "anterior": 1, "posterior": 2}
MODEL = "hippocampus-unet3d"


def _dataset_json(root: Path, labels: object = None, ending: str = ".nii.gz") -> None:
    meta = {"channel_names": {"0": "MRI"}, "labels": labels or LABELS, "file_ending": ending}
    (root / "dataset.json").write_text(json.dumps(meta))


def _staged(root: Path) -> Path:
    """The two shipped hippocampus cases in the staged MSD layout (cases.csv, images/, labels/)."""
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    with (root / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "voxels_anterior_1", "voxels_posterior_2", "suggested_split"])
        for case in HIPPO:
            w.writerow([case, 0, 0, "test"])
            (root / "images" / f"{case}.nii.gz").symlink_to(DATA / f"{case}.nii.gz")
            (root / "labels" / f"{case}.nii.gz").symlink_to(DATA / f"{case}.label.nii.gz")
    return root


def _nnunet(root: Path, folder: str = "Ts") -> Path:
    """The same cases as an nnU-Net raw dataset (imagesTs/CASE_0000.nii.gz, labelsTs/)."""
    (root / f"images{folder}").mkdir(parents=True)
    (root / f"labels{folder}").mkdir()
    for case in HIPPO:
        (root / f"images{folder}" / f"{case}_0000.nii.gz").symlink_to(DATA / f"{case}.nii.gz")
        (root / f"labels{folder}" / f"{case}.nii.gz").symlink_to(DATA / f"{case}.label.nii.gz")
    _dataset_json(root)
    return root


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return _staged(base / "staged"), _nnunet(base / "Dataset004_Hippocampus")


def test_both_layouts_give_the_same_cases(layouts: tuple[Path, Path]) -> None:
    staged, nn = (open_dataset(p) for p in layouts)
    assert nn.kind == "nnunet" and nn.class_names == tuple(LABELS)
    assert (nn.num_classes, nn.spatial_dims) == (staged.num_classes, staged.spatial_dims) == (3, 3)
    assert nn.ids("test") == staged.ids("test") == list(HIPPO)
    for case in HIPPO:
        a, b = staged.load(case), nn.load(case)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        assert a.image.dtype == b.image.dtype and a.label.dtype == b.label.dtype
        assert a.spacing == b.spacing
        np.testing.assert_array_equal(a.affine, b.affine)


def test_the_bench_gives_the_same_figures_on_both_layouts(
    layouts: tuple[Path, Path], tmp_path: Path
) -> None:
    staged, nn = layouts
    exp = Experiment(staged, MODEL, ("medrefine", "marks-only"), interactions=2)
    expected = [(r.method, r.case, r.interaction, r.dice, r.iterations) for r in run_accuracy(exp)]
    out = tmp_path / "bench"
    argv = ["bench", "accuracy", "--data", str(nn), "--model", MODEL, "--interactions", "2"]
    assert main([*argv, "--overlays", "0", "--out", str(out)]) == 0
    got = json.loads((out / "results.json").read_text())["records"]
    assert [
        (r["method"], r["case"], r["interaction"], r["dice"], r["iterations"]) for r in got
    ] == (expected)
    assert len(expected) == 2 * 2 * 3 and expected[-1][3] > 0.5


def test_models_evaluate_reads_an_nnunet_folder(layouts: tuple[Path, Path]) -> None:
    staged, nn = layouts
    dice = evaluate_model(MODEL, nn)
    assert dice == evaluate_model(MODEL, staged) and 0.5 < dice <= 1.0
    assert np.isnan(evaluate_model("nuclei-unet2d", nn))  # 2D, 2 classes: does not fit


def test_imagestr_alone_is_the_test_split(tmp_path: Path) -> None:
    ds = open_dataset(_nnunet(tmp_path / "d", folder="Tr"))
    assert ds.ids("test") == list(HIPPO) and ds.ids("train") == list(HIPPO)
    assert ds.load(HIPPO[0]).image.shape == (34, 47, 40)


def test_channel_files_stack_channel_first_in_2d(tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(DATA / "nuclei-stained.png").convert("RGB"))
    label = (np.asarray(Image.open(DATA / "nuclei-stained.label.png")) > 0).astype(np.uint8)
    for name, split in (("split", True), ("rgb", False)):
        root = tmp_path / name
        (root / "imagesTs").mkdir(parents=True)
        (root / "labelsTs").mkdir()
        if split:  # nnU-Net's one grey file per channel
            for c in range(3):
                Image.fromarray(rgb[..., c]).save(root / "imagesTs" / f"n1_{c:04d}.png")
        else:  # one RGB file
            Image.fromarray(rgb).save(root / "imagesTs" / "n1_0000.png")
        Image.fromarray(label).save(root / "labelsTs" / "n1.png")
        _dataset_json(root, {"background": 0, "nucleus": 1}, ".png")
        ds = open_dataset(root)
        assert (ds.spatial_dims, ds.num_classes) == (2, 2)
        case = ds.load("n1")
        np.testing.assert_array_equal(case.image, np.moveaxis(rgb, -1, 0))
        np.testing.assert_array_equal(case.label, label)


@pytest.mark.parametrize(
    ("labels", "ending", "message"),
    [
        ({"background": 0, "whole": [1, 2]}, ".nii.gz", "only plain integer labels"),
        ({"background": 0, "a": 2}, ".nii.gz", r"label values must be 0\.\.K-1"),
        (LABELS, "nii.gz", "file_ending"),
        (LABELS, ".nrrd", "no labelled case"),
    ],
)
def test_malformed_datasets_are_named(
    tmp_path: Path, labels: object, ending: str, message: str
) -> None:
    root = _nnunet(tmp_path / "d")
    _dataset_json(root, labels, ending)
    with pytest.raises(InputError, match=message):
        open_dataset(root)


def test_a_label_value_beyond_the_classes_is_named(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "d")
    _dataset_json(root, {"background": 0, "hippocampus": 1})
    with pytest.raises(
        InputError, match=r"hippocampus-007: label values 0\.\.2, but dataset\.json names 2"
    ):
        open_dataset(root).load("hippocampus-007")
