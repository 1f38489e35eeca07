"""Interactive methods behind one interface, as the simulated user drives them (protocol R1-R3).

- ``medrefine[:overrides]``: a :class:`medrefine.Session` with ``RefineConfig`` overrides
  written ``section.field=value`` and separated by commas (``medrefine:paper`` = the paper's
  literal Algorithm 1, ``medrefine:shifted`` = the settings for images far from the network's
  training data, ``medrefine:objective.alpha=1,marks.grow=on``; a preset may be followed by
  overrides, ``medrefine:shifted,gate.steps=0``).
- ``seeds`` below is the protocol's seed array S: int, 0 = no seed, ``c + 1`` = class ``c``.
- ``medrefine+newclass[:overrides]``: the same, the task's classes added with ``add_class``.
- ``marks-only``: the network's own mask with every seed written into it, no fine-tuning.
- any name of :data:`medrefine_lab.eval.baselines.BASELINES`: a classical seed method that starts
  from nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from medrefine.engine.config import RefineConfig
from medrefine.engine.session.session import Session
from medrefine.errors import InputError
from medrefine.models.split import SplitModel
from medrefine.site import Site
from medrefine.types import Box, Mark, Paint, RefineResult
from medrefine_lab.eval.baselines import BASELINES, SeedMethod, get_baseline
from medrefine_lab.eval.robot.types import Stroke


class InteractiveMethod(Protocol):
    """``start`` gives P0 (None for methods that start from nothing); ``step`` gives P_k after
    the user's new ``strokes``, with ``seeds`` the protocol's seed array S (0 = none, c+1 = c)."""

    name: str

    def start(self, image: np.ndarray) -> np.ndarray | None: ...

    def step(self, strokes: Sequence[Stroke], seeds: np.ndarray) -> np.ndarray: ...


def stroke_to_mark(stroke: Stroke) -> Mark:
    """The Session mark of a simulated-user stroke: boxes stay boxes, the rest are painted."""
    if stroke.kind == "box":
        assert stroke.box is not None
        return Box(stroke.label, stroke.box[0], stroke.box[1])
    return Paint(stroke.label, stroke.pixels)


class MedrefineMethod:
    """medrefine's session: P0 is the network's own mask (or the site head's, given a site).

    With ``new_class`` the foreground classes of the task are new output channels added by
    :meth:`Session.add_class` (the network never learned them), named ``new structure c``; its
    own foreground classes then count as background in the returned mask. A site that already
    learned such a class brings it, and it is not added again.
    """

    def __init__(
        self,
        model: SplitModel,
        config: RefineConfig,
        name: str = "medrefine",
        new_class: bool = False,
        site: Site | None = None,
    ) -> None:
        self.model, self.config, self.name, self.new_class = model, config, name, new_class
        self.site = site
        self.session: Session | None = None
        self.last_result: RefineResult | None = None
        self._labels = np.arange(model.num_classes)  # session label of each task class

    def start(self, image: np.ndarray) -> np.ndarray:
        self.session = Session(self.model, self.config, site=self.site)
        mask = self.session.set_image(image)
        if not self.new_class:
            return mask
        labels = [0]
        for c in range(1, self.model.num_classes):
            name = f"new structure {c}"
            names = self.session.class_names
            labels.append(names.index(name) if name in names else self.session.add_class(name))
        self._labels = np.asarray(labels)
        return self._task_labels(mask)

    def _task_labels(self, mask: np.ndarray) -> np.ndarray:
        if not self.new_class:
            return mask
        assert self.session is not None
        table = np.zeros(self.session.num_classes, dtype=mask.dtype)
        table[self._labels[1:]] = np.arange(1, self._labels.size)
        return table[mask]

    def _mark(self, stroke: Stroke) -> Mark:
        mark = stroke_to_mark(stroke)
        if self.new_class:
            mark = replace(mark, label=int(self._labels[mark.label]))
        return mark

    def step(self, strokes: Sequence[Stroke], seeds: np.ndarray) -> np.ndarray:
        assert self.session is not None, "start() first"
        for s in strokes:
            self.session.add(self._mark(s))
        self.last_result = self.session.refine()
        return self._task_labels(self.last_result.mask)


class MarksOnly:
    """The network's mask with the seeds written into it: what fine-tuning must beat."""

    name = "marks-only"

    def __init__(self, model: SplitModel) -> None:
        self.model = model
        self._p0: np.ndarray | None = None

    def start(self, image: np.ndarray) -> np.ndarray:
        self._p0 = Session(self.model).set_image(image)
        return self._p0.copy()

    def step(self, strokes: Sequence[Stroke], seeds: np.ndarray) -> np.ndarray:
        assert self._p0 is not None, "start() first"
        out = self._p0.copy()
        out[seeds > 0] = seeds[seeds > 0] - 1
        return out


class SeedBaselineMethod:
    """A classical seed method: no start mask; each step segments from all seeds so far."""

    def __init__(self, method: SeedMethod, num_classes: int) -> None:
        self.method, self.num_classes, self.name = method, num_classes, method.name
        self._image: np.ndarray | None = None

    def start(self, image: np.ndarray) -> None:
        self._image = image
        return None

    def step(self, strokes: Sequence[Stroke], seeds: np.ndarray) -> np.ndarray:
        assert self._image is not None, "start() first"
        if len(np.unique(seeds[seeds > 0])) < 2:  # one class seeded: everything is that class
            present = np.unique(seeds[seeds > 0])
            fill = int(present[0]) - 1 if present.size else 0
            return np.full(seeds.shape, fill, dtype=np.int32)
        return self.method.segment(self._image, seeds, self.num_classes)


def method_config(overrides: str) -> RefineConfig:
    """The config of ``medrefine:<overrides>``: an optional preset (``paper``, ``shifted``)
    then comma-separated ``section.field=value`` overrides.

    >>> method_config("shifted,gate.steps=0").gate.steps
    0
    """
    presets = {"paper": RefineConfig.paper, "shifted": RefineConfig.shifted}
    preset, _, rest = overrides.partition(",")
    if preset.strip() in presets:
        return presets[preset.strip()]().with_overrides(rest)
    return RefineConfig().with_overrides(overrides)


def make_method(spec: str, model: SplitModel) -> InteractiveMethod:
    """Build a method from its command-line name (see the module docstring)."""
    name, _, overrides = spec.partition(":")
    if name in ("medrefine", "medrefine+newclass"):
        config = method_config(overrides)
        return MedrefineMethod(model, config, spec, new_class=name.endswith("+newclass"))
    if overrides:
        raise InputError(f"only medrefine takes settings after ':', got {spec!r}")
    if name == "marks-only":
        return MarksOnly(model)
    if name in BASELINES:
        method = get_baseline(name)
        if model.spatial_dims not in method.spatial_dims:
            raise InputError(f"{name} does not handle {model.spatial_dims}D images")
        return SeedBaselineMethod(method, model.num_classes)
    raise InputError(
        f"unknown method {spec!r}; methods: medrefine[:section.field=value,...], "
        f"medrefine:paper|shifted[,section.field=value,...], "
        f"marks-only, {', '.join(sorted(BASELINES))}"
    )
