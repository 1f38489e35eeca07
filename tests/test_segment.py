"""``medrefine segment``: a shipped MRI in, the network's or the replayed mask out, geometry kept"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medrefine as mr
from medrefine.cli import main
from medrefine.io import read_volume, save_interactions
from medrefine.samples import DATA
from medrefine.segment import replay

MODEL = "hippocampus-unet3d"


@pytest.fixture(scope="module")
def oblique(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hippocampus-007 (an MSD Task04 case) under an oblique, anisotropic affine."""
    img = nib.load(DATA / "hippocampus-007.nii.gz")
    a, b = np.deg2rad(25.0), np.deg2rad(-15.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]]) @ rot
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.0, 1.1, 1.3])
    affine[:3, 3] = [10.0, -20.0, 35.0]
    path = tmp_path_factory.mktemp("img") / "hippocampus_007.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)
    return path


@pytest.fixture(scope="module")
def model() -> mr.SplitModel:
    return mr.load_model(MODEL)


def _marks() -> list[mr.Mark]:
    return [
        mr.Scribble(1, [(17, 20, 15), (17, 25, 20)], 1),
        mr.Click(2, (18, 28, 22), 2),
        mr.Click(0, (5, 5, 5), 2),
    ]


def test_segment_writes_the_networks_mask_with_the_source_geometry(
    oblique: Path, tmp_path: Path, model: mr.SplitModel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(oblique), "--model", MODEL, "--out", str(out), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    source, back = nib.load(oblique), nib.load(out)
    assert back.shape == source.shape
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-5)
    expected = mr.Session(model).set_image(read_volume(oblique))
    np.testing.assert_array_equal(np.asarray(back.dataobj), expected)
    assert len(np.unique(expected)) == 3  # the network finds both hippocampus parts


def test_segment_replays_a_saved_history(
    oblique: Path, tmp_path: Path, model: mr.SplitModel
) -> None:
    session = mr.Session(model)
    first = session.set_image(read_volume(oblique))
    for mark in _marks():
        session.add(mark)
    session.refine()
    label = session.add_class("lesion")
    session.add(mr.Box(label, (14, 18, 14), (20, 26, 22)))
    session.refine()
    session.add(mr.Click(1, (10, 10, 10), 1))
    session.refine()
    session.undo()  # the undone refine leaves the history
    assert [i.kind for i in session.history] == ["refine", "add_class", "refine"]
    recorded = save_interactions(tmp_path / "history.json", session.history)
    out = tmp_path / "refined.nii.gz"
    code = main(
        ["segment", str(oblique), "--model", MODEL, "--out", str(out)]
        + ["--interactions", str(recorded), "--quiet"]
    )
    assert code == 0
    written = np.asarray(nib.load(out).dataobj)
    np.testing.assert_array_equal(written, session.mask)
    assert not np.array_equal(written, first) and (written == label).any()


def test_replay_follows_undo_redo_and_reset_entries(oblique: Path, model: mr.SplitModel) -> None:
    from medrefine.io import RecordedInteraction

    volume = read_volume(oblique)
    live = mr.Session(model)
    live.set_image(volume)
    for mark in _marks():
        live.add(mark)
    refined = live.refine().mask
    live.undo()
    live.redo()
    steps = [
        RecordedInteraction("refine", tuple(_marks())),
        RecordedInteraction("undo"),
        RecordedInteraction("redo"),
    ]
    again = mr.Session(model)
    again.set_image(volume)
    np.testing.assert_array_equal(replay(again, steps), refined)
    np.testing.assert_array_equal(replay(again, [RecordedInteraction("reset")]), live.reset())


def test_segment_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "medrefine-interactions", "version": 9}))
    img = str(DATA / "hippocampus-007.nii.gz")
    out = str(tmp_path / "m.nii.gz")
    assert main(["segment", img, "--model", MODEL, "--out", out, "--interactions", str(bad)]) == 2
    assert "version 9" in capsys.readouterr().err
    assert main(["segment", img, "--model", "no-such-model", "--out", out, "--quiet"]) == 2
    assert main(["segment", str(tmp_path / "none.nii"), "--model", MODEL, "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "m.nii.gz").exists()


def test_a_mask_from_a_remote_session_keeps_the_geometry(
    oblique: Path, tmp_path: Path, model: mr.SplitModel
) -> None:
    """OpenSession carries spacing and affine; the mask a RemoteSession returns is written with
    the volume's geometry and equals the in-process replay."""
    from medrefine.client import RemoteSession
    from medrefine.io import RecordedInteraction, write_mask
    from medrefine.serve import ServerConfig, create_server

    volume = read_volume(oblique)
    steps = [RecordedInteraction("refine", tuple(_marks()))]
    server, port = create_server("127.0.0.1:0", ServerConfig(models=(MODEL,)))
    server.start()
    try:
        with RemoteSession(f"127.0.0.1:{port}", MODEL) as remote:
            remote.set_image(volume)
            remote_mask = replay(remote, steps)
    finally:
        server.stop(grace=1.0)
    local = mr.Session(model)
    local.set_image(volume)
    np.testing.assert_array_equal(remote_mask, replay(local, steps))
    back = read_volume(write_mask(remote_mask, volume, tmp_path / "remote.nii.gz"))
    np.testing.assert_array_equal(back.array, remote_mask)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-5)
    assert back.spacing == pytest.approx(volume.spacing)


def test_segment_a_shipped_png_to_png_and_tiff(tmp_path: Path) -> None:
    image = DATA / "nuclei-stained.png"
    expected = mr.Session(mr.load_model("nuclei-unet2d")).set_image(read_volume(image))
    for name in ("mask.png", "mask.tif"):
        out = tmp_path / name
        assert (
            main(["segment", str(image), "--model", "nuclei-unet2d", "--out", str(out), "--quiet"])
            == 0
        )
        np.testing.assert_array_equal(read_volume(out).array, expected)
    assert expected.any()
