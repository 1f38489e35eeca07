"""What :class:`~medrefine.engine.head.runner.HeadRunner`'s numerical checks decided, kept per head.

``set_image`` builds a runner over a fresh copy of the model's head, and the runner checks
numerically which evaluation mode that head allows (:mod:`medrefine.engine.head.checks`): a
pointwise rewrite against the head on a probe window; for the crop mode, measured margins
(:func:`~medrefine.engine.head.crop.measure_margins`), crops against the whole-image output,
batched crops, and trimmed intermediate tensors (:mod:`medrefine.engine.head.crop_stages`). At
128^3 those checks cost about a second, and for a second image of the same shape on the same
network they decide the same: a :class:`Verdict` is cached under :func:`verdict_key` in
:data:`VERDICTS` and the next runner takes it instead of checking again.
"""

from __future__ import annotations

import hashlib
import threading
import types
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import torch
from torch import fx, nn

from medrefine.engine.head.crop import FeatureGrid

Features = tuple[torch.Tensor, ...]
Cuts = tuple[tuple[str, FeatureGrid], ...]
_SIMPLE = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Verdict:
    """The checks' outcome for one head over features of one shape.

    Attributes:
        pointwise: the head's row rewrite (:func:`~medrefine.engine.head.pointwise.as_row_head`)
            gave the head's output on the probe window (the ``pointwise`` mode).
        grid: the crop mode's measured grid, None when the crop path did not agree (or was not
            tried: ``pointwise``, or an output smaller than the image).
        batch: crops of one shape may share a head call (crop mode).
        cuts: the verified :class:`~medrefine.engine.head.crop_stages.Stages`' cuts (fx node names
            and their grids), None when intermediate tensors are not trimmed.
    """

    pointwise: bool
    grid: FeatureGrid | None = None
    batch: bool = False
    cuts: Cuts | None = None


def _tensors(head: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor the head holds: parameters, buffers and plain tensor attributes (a traced
    head's constants), by qualified name."""
    for prefix, module in head.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor):  # a constant outside the registries
                yield f"{prefix}.{name}", value
        for registry in ("_parameters", "_buffers"):
            for name, t in getattr(module, registry).items():
                if t is not None:
                    yield f"{prefix}.{name}", t


def _settings(module: nn.Module) -> tuple[tuple[str, object], ...]:
    """A module's settings: its public attributes of plain values (``kernel_size``,
    ``padding``, ``scale_factor``, ``mode``, ``eps``, ``training``, ...; reprs) and functions
    it keeps (an activation held as an attribute)."""
    out: list[tuple[str, object]] = []
    for name, value in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, _SIMPLE) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value)
        ):
            out.append((name, repr(value)))
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
            out.append((name, value))
    return tuple(out)


def structure(head: nn.Module) -> tuple[object, ...]:
    """What the head computes, without its values: per submodule its name, class and settings
    (:func:`_settings`), a traced module's generated code (node names included; each traced
    module, and each copy of one, has a class of its own, so the code stands for it), and the
    name, shape, dtype and device of every tensor it holds."""
    modules = tuple(
        (name, fx.GraphModule, _settings(m), m.code)
        if isinstance(m, fx.GraphModule)
        else (name, type(m), _settings(m), None)
        for name, m in head.named_modules()
    )
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, str(t.device)) for name, t in sorted(_tensors(head))
    )
    return modules, tensors


def values_digest(head: nn.Module) -> str:
    """A BLAKE2b digest of the values of every tensor the head holds (in name order)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, t in sorted(_tensors(head), key=lambda item: item[0]):
        digest.update(name.encode())
        data = t.detach().cpu().contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verdict_key(head: nn.Module, features: Features, shape: tuple[int, ...]) -> Hashable:
    """The key a :class:`Verdict` is kept under, for ``head`` over ``features`` (each
    ``(1, C, *spatial)``) for an image of spatial ``shape`` (array order).

    What the checks depend on, and so what the key holds:

    - the head's *structure* (:func:`structure`): which operations, with which settings, on
      tensors of which shapes. That is what bounds the receptive field, makes a head pointwise
      or batch-independent, and names the fx nodes the cached cuts refer to. ``add_class``
      gives the last layer another output row (a new weight shape), so a head with a class
      added is checked again;
    - the head's *values* (:func:`values_digest`). The verdict is meant to be about structure,
      but margins are measured numerically (back-propagation: a weight that is exactly zero,
      or a ReLU dead on the probe, hides a pixel the structure reaches), so a head with other
      weights is measured again rather than trusted. ``set_image`` copies the model's
      pre-trained head for every image, so every image of one model starts from the same
      values and shares the verdict; what ``refine`` adapts is that copy, after its runner has
      checked, and a runner reuses its own verdict for the rest of its image (as before this
      cache) whatever refine does to the weights;
    - the features' shapes (the grid's scales and margins, the probe boxes, the trims), their
      dtypes and device (float16 features are read differently; a head on another device may
      take other kernels), and the image's shape (the pointwise test and the output's cut).

    The features' values are not in it: the checks run on one image's features, but the
    margins are the union of what those and seeded random features of the same shape reach
    (:func:`~medrefine.engine.head.crop.measure_margins`), so a second image of the shape gets the
    margins the structure gives, as the first did.
    """
    feats = tuple((tuple(f.shape), f.dtype, str(f.device)) for f in features)
    return structure(head), values_digest(head), feats, tuple(shape)


class VerdictCache:
    """Verdicts by :func:`verdict_key`, the ``max_entries`` most recently used (thread-safe:
    sessions on server threads share models). A verdict holds grids and node names only."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Verdict | None:
        """The verdict kept under ``key`` (now the most recent), or None."""
        with self._lock:
            verdict = self._entries.get(key)
            if verdict is not None:
                self._entries.move_to_end(key)
            return verdict

    def put(self, key: Hashable, verdict: Verdict) -> None:
        """Keep ``verdict`` under ``key``, dropping the least recently used past the limit."""
        with self._lock:
            self._entries[key] = verdict
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every verdict (the next runner of each head checks again)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


#: The process's verdicts, shared by every session.
VERDICTS = VerdictCache()
