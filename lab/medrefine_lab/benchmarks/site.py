"""``medrefine bench site``: learning across images, by the site protocol.

Each set is one domain's images in a fixed order (:mod:`medrefine_lab.eval.sequence`): on each the
simulated user corrects every method's mask until Dice 0.90 or ``--cap`` interactions, and
medrefine with a site accepts its own final mask. Methods: medrefine without a site and with
one, the marks written into the network's mask (``marks-only``), graph cut and the random
walker (2D; the seed methods start from nothing on every image). Writes, per set, ``OUT/SET/``
``records.json``, ``summary.md`` (per image: first-mask Dice, Dice after one interaction,
NoC@0.85/0.90, seconds; then the means over images 1-5 and from the 6th on) and
``curves.png``; and ``OUT/site.md`` assembling the sets.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrefine.data import open_dataset
from medrefine.engine.config import RefineConfig
from medrefine.errors import MissingExtraError
from medrefine.extras import pyplot
from medrefine.models.preprocess import Preprocessing
from medrefine.models.split import SplitModel
from medrefine.models.zoo import load_model
from medrefine.site import Site, SiteConfig
from medrefine_lab.eval.methods import InteractiveMethod, MedrefineMethod, make_method
from medrefine_lab.eval.report import machine
from medrefine_lab.eval.robot import RobotConfig
from medrefine_lab.eval.sequence import SequenceRecord, run_sequence


@dataclass(frozen=True)
class SiteSet:
    """One sequence: ``images`` cases of ``split`` after ``skip`` (cases.csv order).

    ``model`` names a zoo model, or, as ``third-party:NAME``, an architecture of the
    conformance suite (:func:`third_party`).
    """

    key: str
    title: str
    dataset: str
    model: str
    images: int
    split: str | None = "test"
    skip: int = 0
    groups: tuple[str, ...] | None = None
    new_class: bool = False
    seeds: tuple[str, ...] = ("graphcut", "random_walker")


#: Seed methods on large images (1024^2, 540x800): the random walker takes 5-20 s a call there
#: on the 2-core machine, hours for a set of ten corrected images, so only graph cut runs.
SLOW = ("graphcut",)


def site_sets() -> list[SiteSet]:
    """Every set of the report. Dev parts (where settings were chosen) come first in each
    split and are skipped here; ``never tuned`` sets were not looked at before the report."""
    dsb, hc18, hippo = "dsb2018_nuclei", "hc18_fetal_head", "msd_hippocampus"
    stained, bright, fluo = (
        ("256x320_color_light",),
        ("1024x1024_gray_light",),
        ("256x256_gray_dark",),
    )
    return [
        SiteSet("shift", "Shift: the fluorescence network on stained images (train 21-40; "
                "settings chosen on train 1-20)", dsb, "nuclei-fluo-unet2d", 20, "train", 20,
                stained),
        SiteSet("shift-fresh", "The shift on images never looked at while tuning: the "
                "fluorescence network on the stained test images", dsb, "nuclei-fluo-unet2d",
                10, "test", 0, stained),
        SiteSet("third-party", "A third-party network at its last-layer cut: MONAI's SegResNet "
                "(grey input), briefly fitted on a crop of the shipped stained sample, on stained "
                "images (train 21-32)", dsb, "third-party:monai-segresnet-2d", 12, "train", 20,
                stained, seeds=()),
        SiteSet("shift-brightfield", "A second shift, never tuned on: the fluorescence network "
                "on brightfield images", dsb, "nuclei-fluo-unet2d", 10, None, 0, bright,
                seeds=SLOW),
        SiteSet("new-structure", "New structure: the nuclei network asked for a head class "
                "(add_class) on HC18 (train 21-40)", hc18, "nuclei-unet2d", 20, "train", 20,
                new_class=True, seeds=SLOW),
        SiteSet("in-distribution-nuclei", "In distribution: the nuclei network on fluorescence "
                "test images", dsb, "nuclei-unet2d", 13, "test", 0, fluo),
        SiteSet("in-distribution-hippocampus", "In distribution: hippocampus (3D), test 1-20",
                hippo, "hippocampus-unet3d", 20, "test", seeds=("graphcut",)),
    ]  # fmt: skip


def third_party(name: str) -> SplitModel:
    """The conformance suite's architecture ``name`` as :mod:`medrefine_lab.benchmarks.conformance`
    fits it (a few Adam steps on a crop of the shipped stained sample), cut at its last layer
    (``Architecture.head``); its input turned to the channels it takes (a colour image grey),
    z-scored per channel and padded to its multiple."""
    from medrefine_lab.benchmarks.architectures import by_name, missing
    from medrefine_lab.benchmarks.conformance import fitted, scene
    from medrefine_lab.benchmarks.torchvision_ops import ensure_importable

    ensure_importable()
    arch = by_name(name)
    why = missing(arch)
    if why is not None:
        raise MissingExtraError(
            f"the third-party set needs {arch.package} ({why}): pip install -e '.[dev]'",
            "dev",
            arch.package,
        )
    net = fitted(arch, scene(arch))
    prep = Preprocessing(arch.spatial_dims, arch.in_channels, arch.multiple)
    return SplitModel.from_module(
        net, arch.head, arch.classes, arch.spatial_dims, preprocessing=prep
    )


def model_of(s: SiteSet) -> SplitModel:
    """The network of set ``s``: a zoo model, or a ``third-party:NAME`` one
    (:func:`third_party`)."""
    prefix = "third-party:"
    if s.model.startswith(prefix):
        return third_party(s.model[len(prefix) :])
    return load_model(s.model)


def _methods(
    s: SiteSet, model: SplitModel, site: Site
) -> dict[str, Callable[[], InteractiveMethod]]:
    ours = "medrefine+newclass" if s.new_class else "medrefine"
    config = RefineConfig()  # the defaults, as make_method(ours) builds them

    def fresh_site() -> InteractiveMethod:
        return MedrefineMethod(model, config, f"{ours}+site", s.new_class, site)

    out: dict[str, Callable[[], InteractiveMethod]] = {
        ours: lambda: make_method(ours, model),
        f"{ours}+site": fresh_site,
        "marks-only": lambda: make_method("marks-only", model),
    }
    for name in s.seeds:
        out[name] = lambda name=name: make_method(name, model)  # type: ignore[misc]
    return out


def run_set(
    s: SiteSet,
    root: Path,
    cap: int,
    site_config: SiteConfig,
    only: Sequence[str] = (),
    finished: float = 0.0,
) -> tuple[list[SequenceRecord], str]:
    """Every method of set ``s`` over its images, and the reason of the site's last held-out
    check ("" when no image was accepted)."""
    ds = open_dataset(root / s.dataset)
    ids = ds.ids(s.split, s.groups)[s.skip : s.skip + s.images]
    model = model_of(s)
    cases = [ds.load(i) for i in ids]
    robot = RobotConfig()
    records: list[SequenceRecord] = []
    site = Site(model, site_config)
    for name, make in _methods(s, model, site).items():
        if only and name not in only:
            continue
        records += run_sequence(make, cases, model.num_classes, robot, cap, finished)
    versions = site.report().versions
    check = versions[-1].validation if versions else None
    return records, "" if check is None else check.reason


def _mean(records: Sequence[SequenceRecord], field: str, lo: int, hi: int) -> float:
    values = [getattr(r, field) for r in records if lo <= r.index <= hi]
    return float(np.mean(values)) if values else float("nan")


def summary(s: SiteSet, records: Sequence[SequenceRecord], cap: int, check: str = "") -> str:
    """The set's Markdown section: per-method means over images 1-5 and 6+, then per image;
    ``check``: the reason of the site's last held-out check."""
    methods = list(dict.fromkeys(r.method for r in records))
    last = max(r.index for r in records)
    lines = [
        f"### {s.title}",
        "",
        f"{len({r.case for r in records})} images in order; the user corrects to Dice 0.90 or "
        f"{cap} interactions; NoC = {cap} when never reached.",
        "",
        "| method | first Dice 1-5 | first Dice 6+ | Dice after one interaction 6+ | "
        "NoC85 1-5 | NoC85 6+ | NoC90 6+ | s / image 6+ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        of = [r for r in records if r.method == m]
        lines.append(
            f"| `{m}` | {_mean(of, 'first', 1, 5):.3f} | {_mean(of, 'first', 6, last):.3f} | "
            f"{_mean(of, 'after_one', 6, last):.3f} | "
            f"{_mean(of, 'noc85', 1, 5):.1f} | {_mean(of, 'noc85', 6, last):.1f} | "
            f"{_mean(of, 'noc90', 6, last):.1f} | {_mean(of, 'seconds', 6, last):.1f} |"
        )
    lines += ["", "Per image (first-mask Dice / NoC85):", ""]
    lines.append("| image | " + " | ".join(f"`{m}`" for m in methods) + " |")
    lines.append("|---|" + "---|" * len(methods))
    for i in range(1, last + 1):
        cells = []
        for m in methods:
            r = next((r for r in records if r.method == m and r.index == i), None)
            cells.append("" if r is None else f"{r.first:.2f} / {r.noc85}")
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    for m in methods:
        of = [r for r in records if r.method == m and "site" in m]
        if of:
            started = sum(r.head.startswith("site") for r in of)
            lines += [
                "",
                f"`{m}`: {sum(r.accepted for r in of)} of {last} images accepted; "
                f"{started} started from a site head."
                + (f" The last check: {check}." if check else ""),
            ]
    return "\n".join(lines) + "\n"


def plot(s: SiteSet, records: Sequence[SequenceRecord], path: Path) -> None:
    """First-mask Dice and NoC@0.85 against the image's place in the sequence."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in dict.fromkeys(r.method for r in records):
        of = sorted((r for r in records if r.method == m), key=lambda r: r.index)
        xs = [r.index for r in of]
        axes[0].plot(xs, [r.first for r in of], marker="o", ms=3, label=m)
        axes[1].plot(xs, [r.noc85 for r in of], marker="o", ms=3, label=m)
    axes[0].set_ylabel("first-mask Dice")
    axes[1].set_ylabel("interactions to Dice 0.85")
    for ax in axes:
        ax.set_xlabel("image in the sequence")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(s.title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench site``."""
    p = sub.add_parser(
        "site", help="learning across images (the site protocol)", description=__doc__
    )
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the datasets")
    p.add_argument("--out", default=Path("runs/site"), type=Path, help="the results' folder")
    p.add_argument("--only", default="", help="comma-separated set keys (default: every set)")
    p.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    p.add_argument("--cap", type=int, default=10, help="interactions per image at most")
    p.add_argument("--images", type=int, default=0, help="images per set (0: the set's own)")
    p.add_argument("--dev", action="store_true", help="the sets' dev parts (skipped cases)")
    p.add_argument(
        "--site",
        default="",
        help="SiteConfig overrides, e.g. fit_steps=100,l2=0.1,context_windows=68/196",
    )
    p.add_argument(
        "--finished",
        type=float,
        default=0.0,
        help="accept only final masks with at least this Dice (default 0: every final mask, "
        "as the protocol says; 0.85: only images the user finished)",
    )
    p.set_defaults(func=run)


def _site_config(spec: str) -> SiteConfig:
    values: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, _, raw = item.partition("=")
        default = getattr(SiteConfig(), key.strip())
        if isinstance(default, tuple):  # e.g. context_windows=68/196 (empty: none)
            values[key.strip()] = tuple(int(v) for v in raw.split("/") if v)
        else:
            values[key.strip()] = type(default)(raw)
    return SiteConfig(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """``medrefine bench site``."""
    only = [k for k in args.only.split(",") if k]
    sets = [s for s in site_sets() if not only or s.key in only]
    config = _site_config(args.site)
    methods = [m for m in args.methods.split(",") if m]
    sections = []
    for s in sets:
        if args.dev:
            s = SiteSet(**{**s.__dict__, "skip": 0, "title": s.title + " [dev part]"})
        if args.images:
            s = SiteSet(**{**s.__dict__, "images": args.images})
        start = time.perf_counter()
        records, check = run_set(s, args.data_root, args.cap, config, methods, args.finished)
        out = args.out / s.key
        out.mkdir(parents=True, exist_ok=True)
        (out / "records.json").write_text(json.dumps([r.to_json() for r in records], indent=1))
        text = summary(s, records, args.cap, check)
        minutes = (time.perf_counter() - start) / 60
        (out / "summary.md").write_text(text + f"\n{minutes:.1f} min on {machine()}.\n")
        plot(s, records, out / "curves.png")
        print(text)
        sections.append(text)
    report = "# Learning across images\n\n" + "\n".join(sections) + f"\nMachine: {machine()}.\n"
    (args.out / "site.md").write_text(report)
    return 0
