"""Every setting of a refinement: :class:`RefineConfig`, five frozen, validated sections.

- :class:`LoopConfig` (``loop``): the optimisation loop (optimizer, steps, which layers, seed).
- :class:`ObjectiveConfig` (``objective``): the weights of the loss terms.
- :class:`MarksConfig` (``marks``): how marks become constraints (what
  :func:`medrefine.engine.refine.constraints.build` takes).
- :class:`GateConfig` (``gate``): where the adapted head may overrule the network.
- :class:`PropagateConfig` (``propagate``): the image-led propagation of marks of a new class.

Every field is checked when a section is built: a fixed choice against its ``Literal``, a number
against its type and range. A bad value raises :class:`~medrefine.errors.InputError` naming the
field, the value and what is allowed. Overrides are written with dots and separated by commas,
``RefineConfig().with_overrides("gate.widest=48,loop.lr=0.02")``.

Words used with one meaning throughout the engine:

- *pixel*: a pixel or voxel; distances "in pixels" are in units of the finest axis's voxel size
  when the image has a spacing (:attr:`medrefine.Volume.spacing`), so an isotropic image reads
  the same with or without one.
- *reach*: a distance in pixels from the contradicted marks (the adaptive gate's width,
  ``gate.anchor_reach``); a dimensionless multiplier is a *factor* (``gate.factor``).
- *weight*: the scalar weight of a loss term (``objective.anchor_weight``); how firmly one
  anchor pixel is held is its *hold* (in [0, 1]).
- *network mask*: the pre-trained network's own label mask of the image (before any refine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from medrefine.errors import InputError

Optimizer = Literal["adam", "sgd"]
HeadEval = Literal["auto", "full"]
GrowCriterion = Literal["neighbour", "seed_mean"]
GateKind = Literal["none", "spatial", "feature", "adaptive"]
PropagateKind = Literal["new_classes", "on", "off"]

#: The most gradient steps one refine may take (a bound on the time one request can hold).
MAX_STEPS = 1000
#: The most pixels any sampled set (anchor, box negatives) may hold.
MAX_SAMPLES = 1 << 20
#: The widest finite distance setting, in pixels (wider than any image the engine accepts).
MAX_PIXELS = 1e9


@dataclass(frozen=True)
class Bound:
    """Allowed range of a numeric field: ``lo``..``hi``, each end open or closed."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v: float) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        return (
            f"{'(' if self.lo_open else '['}{_num(self.lo)}, "
            f"{_num(self.hi)}{')' if self.hi_open else ']'}"
        )


def _num(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and v == int(v) and abs(v) < 1e16 else f"{v:g}"


def _bound(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Any:
    """A dataclass field default's metadata carrying its :class:`Bound`."""
    return {"bound": Bound(lo, hi, lo_open, hi_open)}


def _check(section: object) -> None:
    """Check every field of a section dataclass against its type hint and bound."""
    name = type(section).__name__
    hints = get_type_hints(type(section))
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        where = f"{_SECTION_OF.get(name, name)}.{f.name}"
        _check_value(where, value, hints[f.name], f.metadata.get("bound"))


def _check_value(where: str, value: object, hint: Any, bound: Bound | None) -> None:
    args = get_args(hint)
    if get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        if value is None and type(None) in args:
            return
        (hint,) = [a for a in args if a is not type(None)]
        args = get_args(hint)
    if get_origin(hint) is Literal:
        if value not in args:
            raise InputError(f"{where} must be one of {list(args)}, got {value!r}")
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where} must be True or False (on/off), got {value!r}")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where} must be an integer in {bound}, got {value!r}")
    elif hint is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InputError(f"{where} must be a number in {bound}, got {value!r}")
    if bound is not None and not bound.holds(float(value)):  # type: ignore[arg-type]
        kind = "an integer" if hint is int else "a number"
        raise InputError(f"{where} must be {kind} in {bound}, got {value!r}")


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation loop (Algorithm 1's M and eta, and what it adapts).

    Attributes:
        optimizer: ``"adam"`` (medrefine's) or ``"sgd"`` (the paper's); no unit.
        lr: learning rate, per step, in (0, 1] (Adam moves each weight by about ``lr`` per
            step; the heads' weights are of order 0.1-1, so a step of 1 already replaces the
            pre-trained head in one iteration, and larger values only make NaN heads).
        momentum: SGD momentum in [0, 1); unused by Adam.
        max_iterations: the most gradient steps per refine, 0..1000 (M).
        wide_iterations: steps when the adaptive gate is wider than ``gate.anchor_reach``, 0..1000.
        trainable_layers: adapt only the last k parameterised layers of the head (None = all).
        warm_start: start from the session's current head (True) or the pre-trained one (False,
            the paper's choice).
        seed: seeds every random choice (sampled pixels, prototypes), 0..2^32-1.
        head_eval: ``"auto"`` evaluates the head only where the loss needs it; ``"full"`` over the
            whole image every step (the naive loop, a benchmark baseline).
    """

    optimizer: Optimizer = "adam"
    lr: float = field(default=1e-2, metadata=_bound(0.0, 1.0, lo_open=True))
    momentum: float = field(default=0.9, metadata=_bound(0.0, 1.0, hi_open=True))
    max_iterations: int = field(default=20, metadata=_bound(0, MAX_STEPS))
    wide_iterations: int = field(default=50, metadata=_bound(0, MAX_STEPS))
    trainable_layers: int | None = field(default=None, metadata=_bound(1, 1000))
    warm_start: bool = True
    seed: int = field(default=0, metadata=_bound(0, 2**32 - 1))
    head_eval: HeadEval = "auto"

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class ObjectiveConfig:
    """The loss: cross-entropy on the marks plus weighted terms (0 leaves a term out).

    Attributes:
        alpha: weight of ||W - W0||_2 (W0 = the pre-trained head), in [0, 1000]; 0 by
            default (at 1 or 0.1 it lowered Dice and the share of marks honoured; the
            prediction anchor and the gate keep the correction local instead).
        anchor_weight: weight of KL(p0 || p) on sampled unmarked pixels, in [0, 1000].
        anchor_samples: unmarked pixels sampled for that term, 0..2^20 (pixels).
        negative_weight: weight of the box-exclusion term, in [0, 1000].
        class_balanced: every class's marks weigh the same in the mark loss.
    """

    alpha: float = field(default=0.0, metadata=_bound(0.0, 1000.0))
    anchor_weight: float = field(default=1.0, metadata=_bound(0.0, 1000.0))
    anchor_samples: int = field(default=4096, metadata=_bound(0, MAX_SAMPLES))
    negative_weight: float = field(default=1.0, metadata=_bound(0.0, 1000.0))
    class_balanced: bool = True

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class MarksConfig:
    """How marks become constraints (:mod:`medrefine.engine.refine.constraints`).

    Attributes:
        write: write the drawn pixels into the returned mask.
        box_center_fraction: side of a box's positive centre as a fraction of the box's, (0, 1].
        box_band: pixels just outside a box that the loss sees as "not its class", 0..1024.
        box_negatives: pixels sampled farther out for the same term, 0..2^20.
        grow: region-grow scribbles, clicks and paint before the loop.
        grow_threshold: growth tolerance in standard deviations of the normalised image, [0, 100].
        grow_criterion: ``"neighbour"`` (compare with the pixel reached from) or ``"seed_mean"``.
        grow_max_distance: growth cap in pixels along the growth path (None = no cap).
        grown_weight: loss weight of a grown pixel (a drawn one weighs 1), in [0, 100].
    """

    write: bool = True
    box_center_fraction: float = field(default=0.2, metadata=_bound(0.0, 1.0, lo_open=True))
    box_band: int = field(default=6, metadata=_bound(0, 1024))
    box_negatives: int = field(default=4096, metadata=_bound(0, MAX_SAMPLES))
    grow: bool = False
    grow_threshold: float = field(default=0.3, metadata=_bound(0.0, 100.0))
    grow_criterion: GrowCriterion = "neighbour"
    grow_max_distance: float | None = field(default=10.0, metadata=_bound(0.0, MAX_PIXELS))
    grown_weight: float = field(default=0.5, metadata=_bound(0.0, 100.0))

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class GateConfig:
    """Where the adapted head may overrule the network (:mod:`medrefine.engine.gate.plan`).

    Attributes:
        kind: ``"adaptive"``, ``"spatial"``, ``"feature"`` or ``"none"`` (decides everywhere).
        sigma: the spatial gate's width and the adaptive gate's floor, pixels, (0, 10^9].
        factor: the adaptive width is this multiple of the median distance (pixels) from the
            contradicted marks to the network mask's pixels of their class, (0, 1000].
        local_width: pixels, [0, 10^9]: a narrower gate is local (it follows edges); a reading
            beyond it is far, opens the gate to this width and starts the ladder (``steps``).
        steps: far readings that widen the gate (the first to ``local_width``, each further one
            doubling it) before the next makes the correction global, 0..100 (0: global at once).
        widest: the adaptive gate never opens wider, pixels, (0, inf] (inf: it may go global).
        evidence: contradicted pixels of each of two classes needed for a gate wider than
            ``anchor_reach``, 0..2^30 (pixels).
        fallback: the width with less evidence than that, pixels, [0, 10^9].
        edges: a local gate follows the image's edges: crossing an edge k times the mean
            gradient costs about ``edges * k`` extra pixels, [0, 1000] (0: Euclidean gate).
        anchor_reach: a gate wider than this (pixels, [0, inf]) drops the anchor and takes
            ``loop.wide_iterations``.
        anchor_relax: instead of dropping the anchor, release it where a pixel's features
            resemble a contradicted mark.
        tau: the feature gate's temperature (per channel, squared standardised units), (0, 1000].
        prototypes: k-means prototypes per class of the contradicted marks, 1..1024.
    """

    kind: GateKind = "adaptive"
    sigma: float = field(default=4.0, metadata=_bound(0.0, MAX_PIXELS, lo_open=True))
    factor: float = field(default=3.0, metadata=_bound(0.0, 1000.0, lo_open=True))
    local_width: float = field(default=24.0, metadata=_bound(0.0, MAX_PIXELS))
    steps: int = field(default=2, metadata=_bound(0, 100))
    widest: float = field(default=24.0, metadata=_bound(0.0, math.inf, lo_open=True))
    evidence: int = field(default=32, metadata=_bound(0, 1 << 30))
    fallback: float = field(default=12.0, metadata=_bound(0.0, MAX_PIXELS))
    edges: float = field(default=1.0, metadata=_bound(0.0, 1000.0))
    anchor_reach: float = field(default=24.0, metadata=_bound(0.0, math.inf))
    anchor_relax: bool = False
    tau: float = field(default=0.5, metadata=_bound(0.0, 1000.0, lo_open=True))
    prototypes: int = field(default=8, metadata=_bound(1, 1024))

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class PropagateConfig:
    """Image-led propagation of the marks fused with the network's prediction
    (:mod:`medrefine.engine.gate.propagate`).

    Attributes:
        kind: ``"new_classes"`` fuses on refines with marks of a class added by
            :meth:`medrefine.Session.add_class`; ``"on"`` on every refine; ``"off"`` never.
        edge_weight: crossing an edge k times the mean gradient costs about ``edge_weight * k``
            extra pixels of geodesic distance, [0, 1000].
        scale: pixels of geodesic distance per nat of log-probability, (0, 10^9]: longer, the
            network leads further from the marks; shorter, the image leads.
        cap: the most nats of the network's evidence against a class, (0, 1000]: beyond
            ``cap * scale`` pixels nearer to a class's marks than to any other's, a pixel takes
            that class whatever the network says.
        appearance: weight of each class's colour model (:mod:`medrefine.engine.gate.appearance`),
            [0, 100]: nats of fused score per nat of log-likelihood; 0 leaves it out.
        bins: histogram bins per image channel of the colour models, [2, 256].
        lone_margin: while only one class has drawn pixels, the others take its geodesic
            distance plus this many pixels, [0, inf]: ``lone_margin / scale`` nats in the
            marked class's favour where the network and the colour models decide (inf: the one
            marked class takes every pixel it reaches).
        shown_prior: how many pixels' worth of the mask shown before the refine join each
            class's colour model, [0, 10^9] (0: the drawn pixels alone;
            :func:`medrefine.engine.gate.appearance.class_log_likelihoods`). A session started
            from a site head uses 200 where :func:`medrefine.engine.session.sites.fused`
            applies.
    """

    kind: PropagateKind = "new_classes"
    edge_weight: float = field(default=10.0, metadata=_bound(0.0, 1000.0))
    scale: float = field(default=16.0, metadata=_bound(0.0, MAX_PIXELS, lo_open=True))
    cap: float = field(default=5.0, metadata=_bound(0.0, 1000.0, lo_open=True))
    appearance: float = field(default=3.0, metadata=_bound(0.0, 100.0))
    bins: int = field(default=16, metadata=_bound(2, 256))
    lone_margin: float = field(default=64.0, metadata=_bound(0.0, math.inf))
    shown_prior: float = field(default=0.0, metadata=_bound(0.0, MAX_PIXELS))

    def __post_init__(self) -> None:
        _check(self)


_SECTIONS: dict[str, type] = {
    "loop": LoopConfig,
    "objective": ObjectiveConfig,
    "marks": MarksConfig,
    "gate": GateConfig,
    "propagate": PropagateConfig,
}
_SECTION_OF = {cls.__name__: name for name, cls in _SECTIONS.items()}


@dataclass(frozen=True)
class RefineConfig:
    """Every setting of a refinement. Defaults are medrefine's; :meth:`paper` gives the paper's.

    The defaults (Adam, no weight anchor, a prediction anchor on 4096 unmarked pixels, the
    adaptive gate with a 4-pixel floor that follows the image's edges and never opens wider
    than 24 pixels) were
    chosen on the accuracy bench and checked on held-out cases (``docs/design/``): in
    distribution no interaction costs a case more than a few hundredths of Dice. For images far
    from the network's training data, :meth:`shifted` lets the gate widen to global.

    >>> cfg = RefineConfig().with_overrides("gate.widest=48,loop.lr=0.02")
    >>> (cfg.gate.widest, cfg.loop.lr)
    (48.0, 0.02)

    Attributes:
        loop: the optimisation loop (:class:`LoopConfig`).
        objective: the loss terms' weights (:class:`ObjectiveConfig`).
        marks: how marks become constraints (:class:`MarksConfig`).
        gate: where the adapted head may overrule the network (:class:`GateConfig`).
        propagate: the image-led propagation of the marks (:class:`PropagateConfig`).
    """

    loop: LoopConfig = field(default_factory=LoopConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    marks: MarksConfig = field(default_factory=MarksConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    propagate: PropagateConfig = field(default_factory=PropagateConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise InputError(
                    f"RefineConfig.{name} must be a {cls.__name__}, got "
                    f"{type(getattr(self, name)).__name__}"
                )

    @classmethod
    def paper(cls) -> RefineConfig:
        """The paper's literal Algorithm 1: SGD, cross-entropy + alpha*||W - W0||, reset to the
        pre-trained head at every interaction, no gate, no anchor, no marks written, no class
        balancing."""
        return cls(
            loop=LoopConfig(
                optimizer="sgd", lr=0.1, max_iterations=50, momentum=0.0, warm_start=False
            ),
            objective=ObjectiveConfig(alpha=1e-3, anchor_weight=0.0, class_balanced=False),
            marks=MarksConfig(write=False),
            gate=GateConfig(kind="none"),
        )

    @classmethod
    def shifted(cls) -> RefineConfig:
        """For an image far from the network's training data (another stain, scanner or
        modality), where the network misses or invents whole structures: far readings widen the
        gate step by step (24, 48 px) and then make the correction global, without the anchor to
        the network's answer. On images the network knows, the same widening can turn a mostly
        right mask over (``docs/design/gate-width.md``), so it is not the default."""
        return cls(gate=GateConfig(widest=math.inf))

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """Every setting as ``section.field``, in declaration order."""
        return tuple(f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls))

    def with_overrides(self, spec: str) -> RefineConfig:
        """A copy with ``"section.field=value,section.field=value"`` applied (comma-separated;
        ``on``/``off`` for switches, ``none`` for optional numbers, ``inf`` allowed where the
        range says so). An unknown name or a bad value raises :class:`InputError`.

        >>> RefineConfig().with_overrides("marks.grow=on,gate.kind=spatial").gate.kind
        'spatial'
        """
        changes: dict[str, dict[str, object]] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            if ";" in item:
                raise InputError(f"overrides are separated by ',', not ';': {item!r}")
            name, eq, raw = item.partition("=")
            section, _, key = name.strip().partition(".")
            cls = _SECTIONS.get(section)
            known = {f.name for f in fields(cls)} if cls is not None else set()
            if not eq or key not in known:
                raise InputError(
                    f"unknown RefineConfig setting {item!r}; write section.field=value with "
                    f"one of: {', '.join(self.field_names())}"
                )
            assert cls is not None
            hint = get_type_hints(cls)[key]
            changes.setdefault(section, {})[key] = _parse(f"{section}.{key}", raw.strip(), hint)
        sections = {s: replace(getattr(self, s), **kw) for s, kw in changes.items()}
        return replace(self, **sections)


def _parse(where: str, raw: str, hint: Any) -> object:
    """``raw`` as the type ``hint`` says (range checks happen when the section is built)."""
    low = raw.lower()
    args = get_args(hint)
    if get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        if low in ("none", "null") and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        if low not in ("on", "off", "true", "false", "1", "0"):
            raise InputError(f"{where} expects on/off, got {raw!r}")
        return low in ("on", "true", "1")
    try:
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        kind = "an integer" if hint is int else "a number"
        raise InputError(f"{where} expects {kind}, got {raw!r}") from None
    return raw


__all__ = [
    "GateConfig",
    "LoopConfig",
    "MarksConfig",
    "ObjectiveConfig",
    "PropagateConfig",
    "RefineConfig",
]
