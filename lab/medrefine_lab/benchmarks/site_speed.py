"""``medrefine bench site-speed``: what a site costs, on the shipped stained series.

Two figures, both in one process on the same images:

- **accept**: ``Session.accept`` (keep a sample, refit the site head, run its held-out check)
  as the site grows to ``--images`` accepted images. The series' three images, flipped and
  rotated, give 12 distinct ones, cycled, each accepted with its true mask; p50 / p95 over the
  last ten accepts, and the time at 10 and 25 images.
- **open**: ``Session.set_image`` on an image whose features are cached, starting from the site
  head against starting from the network's own (the baseline, no site), alternated ``--repeats``
  times; p50 / p95 of each and the difference.
- **refine**: ``Session.refine`` of 30 painted pixels of each class on that image, from the site
  head, its refines fused by colour (:func:`medrefine.engine.session.sites.fused`) against the
  same head's local refines (a second site on the same store with ``fuse_above=1``, the
  baseline), alternated ``--repeats`` times; p50 / p95 of each and their ratio.

No dataset is needed: the series ships with the package.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
from rich.console import Console
from rich.table import Table

from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.session.session import Session
from medrefine.models.split import SplitModel
from medrefine.models.zoo import load_model
from medrefine.samples import SAMPLES, SERIES, load_sample
from medrefine.site import Site, SiteConfig
from medrefine.site.store import MemoryStore
from medrefine.types import Paint
from medrefine_lab.eval.report import machine


def _views(count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``count`` distinct (image, label) pairs from the series: each image under the eight
    flips and quarter turns of the plane that keep its shape, cycled."""
    cases = [load_sample(name) for name in SERIES]
    turns = [(k, flip) for k in (0, 2) for flip in (False, True)]  # shape-preserving: 256x320
    for i in range(count):
        case = cases[i % len(cases)]
        k, flip = turns[(i // len(cases)) % len(turns)]
        image, label = np.rot90(case.image, k, axes=(1, 2)), np.rot90(case.label, k)
        if flip:
            image, label = image[:, :, ::-1], label[:, ::-1]
        yield np.ascontiguousarray(image), np.ascontiguousarray(label > 0).astype(np.uint8)


def _ms(values: list[float]) -> str:
    return f"{1000 * np.percentile(values, 50):.0f} / {1000 * np.percentile(values, 95):.0f}"


def run(args: argparse.Namespace) -> int:
    """``medrefine bench site-speed``."""
    console = Console()
    model = load_model(SAMPLES[SERIES[0]].model)
    store = MemoryStore()
    site = Site(model, store=store)
    cache = FeatureCache()
    accepts: list[float] = []
    for image, label in _views(args.images):
        session = Session(model, site=site, cache=cache)
        session.set_image(image)
        for c in (0, 1):
            session.add(Paint(c, np.argwhere(label == c)))
        session.refine()
        start = time.perf_counter()
        session.accept()
        accepts.append(time.perf_counter() - start)
    last = accepts[-10:]
    table = Table(title=f"site costs, {model.name} on the stained series ({machine()})")
    for col in ("what", "p50 / p95 ms", "at 10 images ms", "at 25 images ms", "note"):
        table.add_column(col)
    at = [f"{1000 * accepts[n - 1]:.0f}" if len(accepts) >= n else "" for n in (10, 25)]
    note = f"last {len(last)} of {len(accepts)} accepts"
    table.add_row("accept: sample, refit, check", _ms(last), *at, note)
    image = next(_views(1))[0]
    with_site, without = Session(model, site=site, cache=cache), Session(model, cache=cache)
    with_site.set_image(image), without.set_image(image)  # features cached for both
    timed: dict[str, list[float]] = {"site": [], "network": []}
    for _ in range(args.repeats):
        for name, session in (("site", with_site), ("network", without)):
            start = time.perf_counter()
            session.set_image(image)
            timed[name].append(time.perf_counter() - start)
    source = with_site.head_source[0]
    diff = float(np.median(timed["site"]) - np.median(timed["network"]))
    table.add_row(f"open from the site head ({source})", _ms(timed["site"]), "", "", "")
    table.add_row("open from the network (baseline)", _ms(timed["network"]), "", "", "")
    table.add_row("difference, p50", f"{1000 * diff:+.1f}", "", "", "")
    _refines(table, model, site, Site(model, SiteConfig(fuse_above=1.0), store=store), cache, args)
    console.print(table)
    return 0


def _refines(
    table: Table,
    model: SplitModel,
    fused: Site,
    local: Site,
    cache: FeatureCache,
    args: argparse.Namespace,
) -> None:
    """Time one refine from each site's head on the series' first view (module docstring)."""
    if not fused.start().fuse:
        table.add_row("refine: the site head does not fuse here", "", "", "", "")
        return
    image, label = next(_views(1))
    rng = np.random.default_rng(0)
    marks = [Paint(c, rng.permutation(np.argwhere(label == c))[:30]) for c in (0, 1)]
    timed: dict[str, list[float]] = {"fused": [], "local": []}
    for _ in range(args.repeats):
        for name, site in (("fused", fused), ("local", local)):
            session = Session(model, site=site, cache=cache)
            session.set_image(image)
            for mark in marks:
                session.add(mark)
            start = time.perf_counter()
            session.refine()
            timed[name].append(time.perf_counter() - start)
    ratio = float(np.median(timed["fused"]) / np.median(timed["local"]))
    table.add_row("refine from the site head, fused", _ms(timed["fused"]), "", "", "")
    table.add_row("refine from the site head, local (baseline)", _ms(timed["local"]), "", "", "")
    table.add_row("ratio fused / local, p50", f"{ratio:.2f}", "", "", "")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench site-speed``."""
    p = sub.add_parser("site-speed", help="accept and open costs of a site", description=__doc__)
    p.add_argument("--images", type=int, default=50, help="images accepted in all")
    p.add_argument("--repeats", type=int, default=20, help="opens timed each way")
    p.set_defaults(func=run)
