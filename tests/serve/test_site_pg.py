"""A site in PostgreSQL (``mr.Site.open("postgresql://...")``), against a real server: versions
survive reopening, two processes accepting at once lose nothing, damage is refused by name,
rollback and delete work as on a file."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import psycopg
import pytest
import torch

import medrefine as mr
from medrefine.errors import InputError
from medrefine.site.pg_store import PgStore

MODEL = "nuclei-unet2d"
SMALL = mr.SiteConfig(rows_per_image=128, fit_steps=3, folds=2)


def _accept(site: mr.Site, seed: int) -> object:
    """Accept a made-up 24x32 image: features of 96 channels (the model's head's) and a box
    mask that moves with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn((1, 96, 24, 32), generator=g).contiguous(
        memory_format=torch.channels_last
    )
    accepted = np.zeros((24, 32), np.uint8)
    accepted[4 + seed % 5 : 14, 6:20] = 1
    names = ("background", "nucleus")
    return site.accept((features,), accepted, np.zeros_like(accepted), names, f"image-{seed}")


def _accept_many(url: str, first: int, count: int) -> None:
    site = mr.Site.open(url, mr.load_model(MODEL), SMALL)
    for seed in range(first, first + count):
        _accept(site, seed)


def test_a_site_in_postgresql_is_shared_and_checked(pg_url: str) -> None:
    model = mr.load_model(MODEL)
    site = mr.Site.open(pg_url, model, SMALL)
    assert isinstance(site._store, PgStore) and site.where.startswith("postgresql://")
    assert "medrefine:" not in site.where  # no password in what is shown
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_accept_many, args=(pg_url, first, 3)) for first in (0, 100)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    again = mr.Site.open(pg_url, model, SMALL)
    report = again.report()
    assert [v.version for v in report.versions] == list(range(1, 7))
    assert report.current is not None and report.current.images == 6  # none lost
    assert again.start().reason == site.start().reason
    again.rollback(5)
    assert again.report().versions[-1].kind == "rollback"
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE medrefine_site_images SET data = 'x'::bytea WHERE id = 1")
    with pytest.raises(InputError, match="damaged"):
        for image in range(1, 7):
            again._store.image(image)
    with pytest.raises(InputError, match="another model"):
        mr.Site.open(pg_url, mr.load_model("fetalhead-unet2d"))
    again.delete()
    fresh = mr.Site.open(pg_url, model, SMALL)
    assert fresh.report().versions == ()
