"""The site head: the network's head fine-tuned on the rows of every accepted image, plus a
linear term over the rows' box means (:class:`SiteModel`).

A pointwise head sees one pixel's features; the box means of the features around it
(:mod:`medrefine.engine.head.context`) tell it what surrounds that pixel, which is what a
large structure's outline or a tissue's layout needs. The term starts at zero weight and is
pulled toward zero like the head toward its own weights, so with little evidence the site head
is the network's head fine-tuned; the held-out check (:mod:`medrefine.site.validate`) decides
whether it is used at all.

The objective is the cross-entropy of the kept rows, each row weighted by the image pixels it
stands for divided by its class's total to the power ``balance`` (1: every class weighs the
same, 0: as the images hold them; half-way keeps a small structure from being drowned by the
background without fattening it), plus ``l2 * ||W - W0||^2`` toward the network's own head
(the context term's ``W0`` is zero).
Full-batch Adam over at most ``fit_rows`` rows (an equal, seeded share of each image's), on one
thread: a fit takes a few tenths of a second on the 2-core development machine.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medrefine.engine.head.pointwise import RowHead, as_row_head
from medrefine.engine.head.runner import last_layer, resize_outputs
from medrefine.engine.head.threads import single_threaded
from medrefine.engine.session.classes import NEW_CLASS_MARGIN, output_rows
from medrefine.errors import UnsupportedModelError
from medrefine.site.config import SiteConfig
from medrefine.site.samples import ImageSample


def row_head(head: nn.Module) -> RowHead:
    """``head`` rewritten to act on ``(N, C)`` rows (sharing its parameters).

    Raises:
        UnsupportedModelError: the head is not pointwise (it reads a pixel's neighbours), so a
            pixel's feature row does not decide its label.
    """
    rows = as_row_head(head)
    if rows is None:
        raise UnsupportedModelError(
            "a site learns from per-pixel feature rows, and this head reads more than one "
            "pixel (a convolution wider than 1x1, an upsampling or a global operation); cut the "
            "network so that its head is a chain of 1x1 convolutions and per-pixel operations"
        )
    return rows


def with_classes(head: nn.Module, num_classes: int) -> nn.Module:
    """A copy of ``head`` with ``num_classes`` outputs: the rows it lacks start at zero weight
    and a bias ``NEW_CLASS_MARGIN`` below its lowest (never predicted until trained)."""
    out = copy.deepcopy(head)
    have = output_rows(out)
    if have < num_classes:
        layer = last_layer(out, have)
        bias = getattr(layer, "bias", None)
        low = float(bias.detach().min()) if isinstance(bias, torch.Tensor) else 0.0
        resize_outputs(layer, num_classes)
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias[have:] = low - NEW_CLASS_MARGIN
    return out


class SiteModel(nn.Module):
    """A site head on rows: ``head``'s row form on a row's features (its first
    ``sum(splits)`` channels) plus ``context``, a linear map without bias of the box means
    after them (None: the head alone, rows' box means ignored).

    Args:
        head: a pointwise head with one output per class (kept as ``self.head``).
        windows: the box sizes (pixels) of the context channels; () for none.
        context_channels: how many channels the box means take in a row.
    """

    def __init__(self, head: nn.Module, windows: tuple[int, ...] = (), context_channels: int = 0):
        super().__init__()
        self.head = head.train(False)
        self.windows = tuple(windows) if context_channels else ()
        self.context: nn.Linear | None = None
        if self.windows:
            self.context = nn.Linear(context_channels, output_rows(head), bias=False)
            nn.init.zeros_(self.context.weight)
        self._rows = [row_head(self.head)]  # a list: its parameters are the head's, once

    def forward(self, x: torch.Tensor, splits: Sequence[int]) -> torch.Tensor:
        """Logits ``(N, K)`` of rows ``x`` ``(N, C)``."""
        return self.logits(self.parts(x, splits))

    def parts(self, x: torch.Tensor, splits: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Rows ``x`` as the contiguous blocks :meth:`logits` reads: one per feature, then the
        box means when the model has a context term (a fit cuts them once, not every step)."""
        c = sum(splits)
        blocks = [b.contiguous() for b in split_rows(x[:, :c], splits)]
        if self.context is not None:
            blocks.append(x[:, c:].contiguous())
        return tuple(blocks)

    def logits(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``(N, K)`` of rows cut by :meth:`parts`."""
        if self.context is None:
            return self._rows[0](*parts)
        return self._rows[0](*parts[:-1]) + self.context(parts[-1])

    def blob(self) -> dict[str, object]:
        """What a site stores of it: the head's state, the context weight ``(K, P)`` (empty
        ``(0,)`` without context) and the windows (:func:`torch.load` with ``weights_only``
        reads it back)."""
        weight = torch.zeros(0) if self.context is None else self.context.weight.detach().clone()
        return {"head": torch_state(self.head), "context": weight, "windows": list(self.windows)}


def torch_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``head``'s state."""
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def context_of(samples: Sequence[ImageSample], config: SiteConfig) -> tuple[int, ...]:
    """The windows a fit on ``samples`` uses: the config's when there are at least
    ``context_images`` samples and every one carries them, else none (too few images, or a
    sample kept before sites had context, or with other windows)."""
    wanted = config.context_windows
    enough = len(samples) >= config.context_images
    return wanted if enough and all(s.windows == wanted for s in samples) else ()


def stacked(
    samples: Sequence[ImageSample], class_names: Sequence[str], context: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every sample's rows ``(N, C)`` float32 (their box means left out unless ``context``),
    labels ``(N,)`` int64 (indices into ``class_names``, mapped by name from each sample's own)
    and weights ``(N,)`` float32, concatenated in order."""
    if not samples:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for s in samples:
        lookup = np.asarray([index[name] for name in s.class_names], dtype=np.int64)
        labels.append(lookup[s.labels.astype(np.int64)])
    kept = [s.rows if context else s.rows[:, : s.feature_channels] for s in samples]
    x = torch.from_numpy(np.concatenate(kept).astype(np.float32))
    y = torch.from_numpy(np.concatenate(labels))
    w = torch.from_numpy(np.concatenate([s.weights for s in samples]))
    return x, y, w


def thinned(samples: Sequence[ImageSample], most: int, seed: int) -> list[ImageSample]:
    """``samples`` with at most ``most`` rows in all: each image keeps an equal share, drawn
    without replacement (seeded), each kept row then standing for proportionally more pixels."""
    total = sum(s.rows.shape[0] for s in samples)
    if total <= most:
        return list(samples)
    share = max(1, most // len(samples))
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        n = s.rows.shape[0]
        if n <= share:
            out.append(s)
            continue
        keep = np.sort(rng.choice(n, share, replace=False))
        out.append(replace(s, rows=s.rows[keep], labels=s.labels[keep],
                           weights=s.weights[keep] * (n / share)))  # fmt: skip
    return out


def split_rows(x: torch.Tensor, splits: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Rows ``(N, sum(splits))`` as one ``(N, C_i)`` block per feature."""
    return tuple(torch.split(x, list(splits), dim=1))


def fit_head(
    head: nn.Module,
    samples: Sequence[ImageSample],
    class_names: Sequence[str],
    config: SiteConfig,
) -> SiteModel:
    """A new site head: ``head`` (the network's, left unchanged) with one output per class of
    ``class_names``, and a context term where every sample carries the config's windows
    (:func:`context_of`), fine-tuned on ``samples``."""
    num_classes = len(class_names)
    windows = context_of(samples, config)
    splits = samples[0].splits if samples else ()
    x, y, w = stacked(thinned(samples, config.fit_rows, config.seed), class_names, bool(windows))
    out = SiteModel(with_classes(head, num_classes), windows, x.shape[1] - sum(splits))
    per_class = torch.zeros(num_classes).index_add_(0, y, w)
    # balance 1: every present class's rows weigh the same in all; 0: as the image holds them
    weight = w / per_class[y].pow(config.balance)
    weight = weight / weight.sum().clamp_min(1e-12)
    params = [p for p in out.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=config.lr)
    parts = out.parts(x, splits)
    with single_threaded():  # a few thousand rows: thread hand-offs cost more than they give
        for _ in range(config.fit_steps if samples else 0):
            loss = (F.cross_entropy(out.logits(parts), y, reduction="none") * weight).sum()
            if config.l2 > 0:
                drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start, strict=True))
                loss = loss + config.l2 * drift
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return out


@torch.no_grad()
def predict_rows(model: SiteModel, x: torch.Tensor, splits: Sequence[int]) -> torch.Tensor:
    """``model``'s class (first maximum) at every row of ``x``, ``(N,)`` int64."""
    return model(x, splits).argmax(1)
