"""A site on disk: versions survive reopening, several processes share one file without losing
an accept, damage and foreign files are refused by name, rollback, reset, bounds, delete."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.errors import InputError, NotFoundError, StateError

MODEL = "nuclei-unet2d"
SMALL = mr.SiteConfig(rows_per_image=128, fit_steps=3, folds=2)


def _image(seed: int) -> tuple[tuple[torch.Tensor], np.ndarray, np.ndarray]:
    """Features of a made-up 24x32 image (96 channels, as the model's head takes), a mask
    accepted for it and the mask it started from."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn((1, 96, 24, 32), generator=g).contiguous(
        memory_format=torch.channels_last
    )
    accepted = np.zeros((24, 32), np.uint8)
    accepted[4 + seed % 5 : 14, 6:20] = 1
    return (features,), accepted, np.zeros_like(accepted)


def _accept(site: mr.Site, seed: int, names: tuple[str, ...] = ("background", "nucleus")) -> object:
    features, accepted, started = _image(seed)
    return site.accept(features, accepted, started, names, f"image-{seed}")


def test_versions_survive_reopening_and_a_second_site_object(tmp_path: Path) -> None:
    path = tmp_path / "nuclei.site"
    model = mr.load_model(MODEL)
    site = mr.Site.open(path, model, SMALL)
    for seed in range(3):
        _accept(site, seed)
    again = mr.Site.open(path, model, SMALL)
    report = again.report()
    assert [v.version for v in report.versions] == [1, 2, 3]
    assert [v.images for v in report.versions] == [1, 2, 3]
    assert report.current is not None and report.current.validation is not None
    assert str(report).startswith(f"site of {MODEL} ({path})")
    assert again.start().reason == site.start().reason


def _accept_many(path: str, first: int, count: int) -> None:
    site = mr.Site.open(path, mr.load_model(MODEL), SMALL)
    for seed in range(first, first + count):
        _accept(site, seed)


def test_two_processes_accepting_at_once_lose_no_image(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.site")
    mr.Site.open(path, mr.load_model(MODEL), SMALL)  # created before the writers start
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_accept_many, args=(path, first, 4)) for first in (0, 100)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    report = mr.Site.open(path, mr.load_model(MODEL), SMALL).report()
    assert [v.version for v in report.versions] == list(range(1, 9))
    assert report.current is not None and report.current.images == 8  # none lost


def test_a_damaged_or_foreign_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "nuclei.site"
    model = mr.load_model(MODEL)
    _accept(mr.Site.open(path, model, SMALL), 0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE images SET data = zeroblob(length(data))")
    damaged = mr.Site.open(path, model, SMALL)
    with pytest.raises(InputError, match=f"{path} is damaged: accepted image 1"):
        _accept(damaged, 1)
    with pytest.raises(InputError, match="made for another model"):
        mr.Site.open(path, mr.load_model("fetalhead-unet2d"))
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    with pytest.raises(InputError, match="is not a site file"):
        mr.Site.open(text, model)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    with pytest.raises(InputError, match="format '99'"):
        mr.Site.open(path, model)


def test_rollback_reset_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "nuclei.site"
    site = mr.Site.open(path, mr.load_model(MODEL), SMALL)
    for seed in range(3):
        _accept(site, seed)
    back = site.rollback(2)
    assert (back.version, back.kind, back.images) == (4, "rollback", 2)
    assert back.validation == site.report().versions[1].validation
    empty = site.reset()
    assert (empty.kind, empty.images, empty.in_use) == ("reset", 0, False)
    start = site.start()
    assert (start.head, start.reason) == (None, "site v5 not used: reset: no accepted image")
    assert site.rollback(4).images == 2  # the reset itself can be undone
    with pytest.raises(NotFoundError, match="version 99"):
        site.rollback(99)
    site.delete()
    assert not path.exists()
    with pytest.raises(StateError, match="was deleted"):
        site.report()


def test_a_site_keeps_its_newest_images_and_versions() -> None:
    config = mr.SiteConfig(rows_per_image=64, fit_steps=2, max_images=3, history=4)
    site = mr.Site(mr.load_model(MODEL), config)
    for seed in range(8):
        version = _accept(site, seed)
    assert [v.version for v in site.report().versions] == [5, 6, 7, 8]
    assert version.images == 3  # type: ignore[attr-defined]  # the oldest left at the bound
    store = site._store
    assert [r.images for r in store.versions()] == [(3, 4, 5), (4, 5, 6), (5, 6, 7), (6, 7, 8)]
    assert set(store._images) == {3, 4, 5, 6, 7, 8}  # type: ignore[attr-defined]  # 1, 2: gone
