"""Small real cases shipped inside the package (see ATTRIBUTION.md beside this file).

``load_sample(name)`` returns a :class:`medrefine.data.Case`: the image as a user loads it from
the file and its ground truth, in the layout of :mod:`medrefine.data.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrefine.data import Case
from medrefine.errors import NotFoundError
from medrefine.io import read_nifti, read_png

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Sample:
    """A shipped case: file stem, the zoo model it suits, pixel spacing (mm) where the file
    does not carry it, the file suffix, and whether the case lies outside the model's training
    domain (``shifted``: the model's own mask is poor there, by design; not a card case)."""

    name: str
    model: str
    spacing: tuple[float, ...]
    suffix: str
    shifted: bool = False


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("nuclei-stained", "nuclei-unet2d", (1.0, 1.0), ".png"),
        Sample("nuclei-fluorescence", "nuclei-unet2d", (1.0, 1.0), ".png"),
        Sample("fetalhead", "fetalhead-unet2d", (0.09434756243, 0.09434756243), ".png"),
        Sample("hippocampus-007", "hippocampus-unet3d", (1.0, 1.0, 1.0), ".nii.gz"),
        Sample("hippocampus-017", "hippocampus-unet3d", (1.0, 1.0, 1.0), ".nii.gz"),
        # A series of stained tissue, on which the fluorescence-trained network finds almost no
        # nucleus (Dice below 0.04): what `medrefine demo`'s site part learns from.
        *(
            Sample(f"stained-series-{i}", "nuclei-fluo-unet2d", (1.0, 1.0), ".png", shifted=True)
            for i in (1, 2, 3)
        ),
    )
}
#: The shipped series of one domain, in order (``medrefine demo``'s site part).
SERIES = ("stained-series-1", "stained-series-2", "stained-series-3")


def list_samples() -> list[str]:
    """Names of the shipped sample cases.

    >>> list_samples()[:2]
    ['fetalhead', 'hippocampus-007']
    """
    return sorted(SAMPLES)


def load_sample(name: str) -> Case:
    """Image and ground truth of a shipped sample (see :func:`list_samples`).

    >>> case = load_sample("nuclei-stained")
    >>> case.image.shape, case.label.shape  # (C, y, x) RGB and its (y, x) labels
    ((3, 256, 320), (256, 320))
    """
    if name not in SAMPLES:
        raise NotFoundError(f"no sample named {name!r}; samples: {list_samples()}")
    s = SAMPLES[name]
    if s.suffix == ".png":
        image = read_png(DATA / f"{name}.png")
        label = (read_png(DATA / f"{name}.label.png") > 0).astype(np.uint8)
        return Case(name, image, label, s.spacing)
    image, spacing, affine = read_nifti(DATA / f"{name}.nii.gz")
    label = np.rint(read_nifti(DATA / f"{name}.label.nii.gz")[0]).astype(np.uint8)
    return Case(name, image, label, spacing, affine=affine)
