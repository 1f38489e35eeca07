"""``medrefine segment IMAGE --model NAME --out MASK [--interactions FILE.json]``.

Reads an image in any format :func:`medrefine.io.read_volume` reads, runs the network, replays a
recorded list of interactions (:mod:`medrefine.io.interactions`) through the public
:class:`medrefine.Session` API if one is given, and writes the mask with the image's geometry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import medrefine as mr
from medrefine.io import load_interactions, read_volume, write_mask
from medrefine.io.interactions import RecordedInteraction
from medrefine.types import RefineProgress


@dataclass(frozen=True)
class Segmented:
    """What :func:`segment` did.

    Attributes:
        mask: the written label mask, the image's spatial shape, array order.
        path: the mask file.
        class_names: the session's classes (added ones included), index = label.
        replayed: interactions replayed.
    """

    mask: np.ndarray
    path: Path
    class_names: tuple[str, ...]
    replayed: int


def replay(
    session: Any,
    interactions: Sequence[RecordedInteraction],
    step: Callable[[RecordedInteraction], None] | None = None,
    progress: Callable[[RefineProgress], None] | None = None,
) -> np.ndarray:
    """Drive ``session`` (a :class:`medrefine.Session` or ``RemoteSession`` holding an image)
    through ``interactions`` in order; returns the final mask.

    Args:
        step: called after each interaction.
        progress: passed to every in-process ``refine`` (per gradient step).
    """
    for entry in interactions:
        if entry.kind == "refine":
            for mark in entry.marks:
                session.add(mark)
            if progress is not None:
                session.refine(progress)
            else:  # a RemoteSession takes its progress callback at construction
                session.refine()
        elif entry.kind == "add_class":
            session.add_class(entry.class_name)
        elif entry.kind == "undo":
            session.undo()
        elif entry.kind == "redo":
            session.redo()
        else:
            session.reset()
        if step is not None:
            step(entry)
    return np.asarray(session.mask)


def segment(
    image: str | Path,
    model: str,
    out: str | Path,
    interactions: str | Path | None = None,
    show_progress: bool = True,
) -> Segmented:
    """Segment ``image`` with zoo model ``model`` (after replaying ``interactions``), write the
    mask to ``out`` with the image's geometry and return it.

    Raises:
        NotFoundError: a missing file or an unknown model. InputError: a bad file, an image the
        model cannot take, or an interaction the session refuses.
    """
    steps = load_interactions(interactions) if interactions is not None else ()
    bar = tqdm(total=3 + len(steps), desc="reading", unit="step", disable=not show_progress)
    try:
        volume = read_volume(image)
        bar.update()
        bar.set_description(f"{model} on {tuple(volume.array.shape)}")
        session = mr.Session(mr.load_model(model))
        mask = session.set_image(volume)
        bar.update()

        def refining(p: RefineProgress) -> None:
            bar.set_postfix(iteration=f"{p.iteration}/{p.max_iterations}", refresh=False)

        def done(entry: RecordedInteraction) -> None:
            bar.set_description(entry.kind)
            bar.update()

        if steps:
            mask = replay(session, steps, done, refining)
        bar.set_description("writing")
        names = session.class_names
        path = write_mask(mask, volume, out, class_names=names)
        bar.update()
    finally:
        bar.close()
    return Segmented(mask, path, names, len(steps))


def _run(args: argparse.Namespace) -> int:
    done = segment(args.image, args.model, args.out, args.interactions, not args.quiet)
    labels, counts = np.unique(done.mask, return_counts=True)
    summary = ", ".join(
        f"{done.class_names[int(v)] if int(v) < len(done.class_names) else int(v)}: {int(n)}"
        for v, n in zip(labels, counts, strict=True)
    )
    print(
        f"wrote {done.path}: mask {tuple(done.mask.shape)} after {done.replayed} "
        f"interactions ({summary})"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine segment``."""
    p = sub.add_parser("segment", help="segment an image file, optionally replaying interactions")
    p.add_argument("image", help="NIfTI, NRRD, DICOM folder, PNG/TIFF/JPEG or .npy")
    p.add_argument("--model", required=True, help="zoo model name (medrefine models)")
    p.add_argument("--out", required=True, help=".nii.gz, .nrrd, .dcm (DICOM-SEG), .png, .tif")
    p.add_argument("--interactions", default=None, help="interactions file (.json) to replay")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
