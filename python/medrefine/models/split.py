"""Cut a segmentation network into a frozen backbone and a trainable head.

``SplitModel.from_module`` traces the network with ``torch.fx`` and cuts it at the named head
submodules: the head is those submodules plus everything downstream of them; every tensor that
flows from the rest of the graph into the head (U-Net skip connections included) becomes one
cached feature. The backbone returns that tuple of features; the head takes them positionally
and returns logits ``(1, K, *spatial)``.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import fx, nn

from medrefine.backends.base import FeatureExtractor
from medrefine.errors import UnsupportedModelError, first_line
from medrefine.models.activation import LogProbabilities, looks_like_probabilities, strip_activation
from medrefine.models.checks import agree, check_classes, probe, reference
from medrefine.models.modes import owned_copy, per_image_norms
from medrefine.models.preprocess import Preprocessing
from medrefine.models.quiet import quiet_stderr
from medrefine.models.tracing import symbolic_trace

_log = logging.getLogger(__name__)


def _in_head(node: fx.Node, prefixes: Sequence[str]) -> bool:
    if node.op != "call_module":
        return False
    target = str(node.target)
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _is_size(node: fx.Node) -> bool:
    """Whether ``node`` is a tensor's shape or part of it (``x.shape``, ``x.shape[-2:]``,
    ``x.size()``), which the backbone cannot return as a feature tensor."""
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        return isinstance(source, fx.Node) and _is_size(source)
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "shape"
    return node.op == "call_method" and node.target == "size" and len(node.args) == 1


def size_carrier(size: Sequence[int]) -> torch.Tensor:
    """An empty tensor ``(1, 0, *size)`` that carries spatial ``size`` as a feature: cached,
    cropped and padded like the others, it costs no memory."""
    return torch.zeros((1, 0, *size))


def carried_size(carrier: torch.Tensor) -> torch.Size:
    """The spatial size a :func:`size_carrier` tensor carries."""
    return carrier.shape[2:]


def _split_graph(gm: fx.GraphModule, head: Sequence[str]) -> tuple[fx.Graph, fx.Graph, int]:
    """Backbone graph (input -> feature tuple), head graph (features -> output), feature count."""
    nodes = list(gm.graph.nodes)
    seeds = [n for n in nodes if _in_head(n, head)]
    if not seeds:
        names = sorted({str(n.target).split(".")[0] for n in nodes if n.op == "call_module"})
        raise UnsupportedModelError(
            f"no submodule named {list(head)} in the network; top-level submodules are {names}"
        )
    in_head: set[fx.Node] = set()
    for n in nodes:  # graph order is topological: descendants of a head node follow it
        if n.op != "output" and (n in seeds or any(a in in_head for a in n.all_input_nodes)):
            in_head.add(n)
    features = [
        n
        for n in nodes
        if n not in in_head and n.op != "output" and any(u in in_head for u in n.users)
    ]
    output = next(n for n in nodes if n.op == "output")
    if any(a not in in_head for a in output.all_input_nodes):
        raise UnsupportedModelError(
            "the network's output does not come from the head "
            f"{list(head)}; choose submodules its output depends on"
        )

    back, env_b = fx.Graph(), dict[fx.Node, fx.Node]()
    for n in nodes:
        if n not in in_head and n.op != "output":
            env_b[n] = back.node_copy(n, lambda a: env_b[a])
    back.output(
        tuple(
            back.call_function(size_carrier, (env_b[f],)) if _is_size(f) else env_b[f]
            for f in features
        )
    )

    hd: fx.Graph = fx.Graph()
    env_h: dict[fx.Node, fx.Node] = {
        f: hd.placeholder(f"feature_{i}") for i, f in enumerate(features)
    }
    for f in features:  # a shape the head reads (e.g. the input's size, to upsample to)
        if _is_size(f):
            env_h[f] = hd.call_function(carried_size, (env_h[f],))
    for n in nodes:
        if n in in_head or n.op == "output":
            env_h[n] = hd.node_copy(n, lambda a: env_h[a])
    return back, hd, len(features)


def logits_head(head: fx.GraphModule, features: Sequence[torch.Tensor]) -> tuple[nn.Module, str]:
    """``head`` made to return logits, and what was done (one of ``OutputKinds``).

    A final softmax (over the class axis) or sigmoid in the graph is cut off; else, if the
    head's output on ``features`` (one probe) is per-pixel probabilities, the head is wrapped
    to return their log. The argmax, hence the network's mask, is unchanged either way.
    """
    kind = strip_activation(head)
    if kind != "logits":
        _log.info("the network ends in a %s; the head returns the logits before it", kind[:-4])
        return head, kind
    with torch.no_grad():
        out = head(*features)
    if looks_like_probabilities(out):
        _log.info("the network outputs probabilities; the head returns their log")
        return LogProbabilities(head), "log-probabilities"
    return head, kind


def as_given(spatial_dims: int) -> Preprocessing:
    """The default preprocessing of a user's network: its input exactly as the user's array
    (float32, channel axis added if absent), no normalisation, no padding, so a session's
    network mask equals ``net(x).argmax(1)``. Pass a :class:`Preprocessing` to z-score or pad
    (the zoo models carry their own)."""
    return Preprocessing(spatial_dims, normalize=False)


class _TupleBackbone(nn.Module):
    """Makes a backbone that returns one tensor return a 1-tuple."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.inner(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@dataclass
class SplitModel:
    """A network as frozen ``backbone`` + trainable ``head``.

    Attributes:
        backbone: image ``(1, C, *spatial)`` float32 -> tuple of feature tensors ``(1, C_i, ...)``.
        head: ``head(*features)`` -> logits ``(1, num_classes, *spatial)``.
        num_classes: output classes, 0 = background.
        spatial_dims: 2 or 3.
        preprocessing: how a user's image becomes the backbone input.
        class_names: one name per class.
        name: model name (zoo name or user's).
        extractor: runs the backbone when a session is given no backend (the ONNX Runtime
            session of an ONNX network); None: PyTorch runs ``backbone``.
        backbone_digest: the backbone's identity in the feature cache when its weights are not
            a ``state_dict`` (an ONNX network: the hash of the frozen graph); None: hashed from
            ``backbone.state_dict()``.
        output_kind: what ``head`` returns (:data:`~medrefine.models.activation.OutputKinds`):
            ``"logits"``; ``"softmax cut"`` / ``"sigmoid cut"`` when the network's final
            softmax or sigmoid was cut off the head (refinement needs logits); or
            ``"log-probabilities"`` when its output was found to be probabilities.
    """

    backbone: nn.Module
    head: nn.Module
    num_classes: int
    spatial_dims: int
    preprocessing: Preprocessing
    class_names: tuple[str, ...] = ()
    name: str = "model"
    extractor: FeatureExtractor | None = None
    backbone_digest: str | None = None
    output_kind: str = "logits"
    _digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise UnsupportedModelError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.num_classes < 1:
            raise UnsupportedModelError(f"num_classes must be >= 1, got {self.num_classes}")
        if not self.class_names:
            self.class_names = ("background",) + tuple(
                f"class_{i}" for i in range(1, self.num_classes)
            )
        if len(self.class_names) != self.num_classes:
            raise UnsupportedModelError(
                f"{len(self.class_names)} class names for {self.num_classes} classes"
            )
        self.backbone.eval().requires_grad_(False)
        self.head.eval().requires_grad_(True)  # refined, even if the network came frozen

    @classmethod
    def from_module(
        cls,
        net: nn.Module,
        head: Sequence[str],
        num_classes: int,
        spatial_dims: int,
        preprocessing: Preprocessing | None = None,
        example: torch.Tensor | None = None,
        **kwargs: object,
    ) -> SplitModel:
        """Split ``net`` at the submodules named in ``head`` (dotted names, e.g. ``"dec1"``).

        ``preprocessing`` None gives the network exactly the user's image (:func:`as_given`:
        no normalisation, no padding); pass a :class:`Preprocessing` for anything else.

        ``net`` itself is never changed: the split is made from a copy. It reproduces ``net`` in
        the train/eval modes its submodules have (:mod:`medrefine.models.modes`: a norm with
        running statistics in train mode becomes per-image statistics; train-mode dropout is
        refused). The network must return one logits tensor ``(1, K, *spatial)`` with its
        input's spatial shape (:mod:`medrefine.models.checks`).

        The split is checked on ``example`` (an input ``(1, C, *spatial)``; by default random
        values of 64 pixels per axis (32 in 3D), at least twice the preprocessing's pad multiple,
        with C read off the first convolution): backbone then head, run in eval mode as a
        session runs them, must reproduce ``net``'s output as its owner runs it, or
        :class:`UnsupportedModelError` is raised (torch.fx follows Python control flow on
        placeholder values, which some networks branch on).
        """
        prep = preprocessing or as_given(spatial_dims)
        work = owned_copy(net)
        x = example if example is not None else probe(work, spatial_dims, prep.multiple)
        want = reference(work, x, spatial_dims, given=example is not None)
        per_image_norms(work, spatial_dims)
        with quiet_stderr():  # torch.fx prints a traceback and its code before it raises
            try:
                gm = symbolic_trace(work)
            except Exception as exc:  # fx raises many types for untraceable control flow
                detail = first_line(exc)
                raise UnsupportedModelError(
                    f"torch.fx cannot trace {type(net).__name__}: {detail}; split it through "
                    "ONNX instead (export_module, then SplitModel.from_onnx)"
                ) from exc
            back, hd, _ = _split_graph(gm, list(head))
            backbone, head_gm = fx.GraphModule(gm, back), fx.GraphModule(gm, hd)
            backbone.eval(), head_gm.eval()  # as the session runs them
            check_classes(num_classes, agree(want, backbone, head_gm, work, x))
            with torch.no_grad():
                head_out, kind = logits_head(head_gm, backbone(x))
        return cls(backbone, head_out, num_classes, spatial_dims, prep, output_kind=kind, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_modules(
        cls,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        spatial_dims: int,
        preprocessing: Preprocessing | None = None,
        **kwargs: object,
    ) -> SplitModel:
        """Use an explicit backbone (returning a tensor or a tuple of tensors) and head;
        ``preprocessing`` None feeds the user's image unchanged (:func:`as_given`).

        Both are copied (the originals are never changed) and made to compute in eval mode
        what they compute in their modes (:mod:`medrefine.models.modes`)."""
        prep = preprocessing or as_given(spatial_dims)
        parts = owned_copy(backbone), owned_copy(head)
        for part in parts:
            per_image_norms(part, spatial_dims)
        return cls(_TupleBackbone(parts[0]), parts[1], num_classes, spatial_dims, prep, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike[str],
        cut: Sequence[str],
        num_classes: int,
        spatial_dims: int,
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] = (),
        name: str | None = None,
        example: torch.Tensor | None = None,
        providers: Sequence[str] | None = None,
    ) -> SplitModel:
        """Split an ONNX network: the frozen part runs in ONNX Runtime, the head in PyTorch.

        ``cut`` names ONNX nodes (the head is those nodes and everything downstream of them) or
        tensors (the head starts at those tensors); the head is converted to a trainable
        ``torch.fx`` module by :mod:`medrefine.onnx` (operators: ``medrefine.onnx.SUPPORTED_OPS``)
        and the frozen part becomes an ONNX graph whose outputs are the features, run by
        :class:`~medrefine.backends.OnnxRuntimeBackend` on ``providers`` (by default the best
        available of TensorRT, CUDA, CPU). The split is checked on ``example`` (an input
        ``(1, C, *spatial)`` float32; by default random, C and fixed sizes read off the graph):
        frozen graph then head must reproduce the network's output. ``preprocessing`` None feeds
        the network the user's image unchanged (:func:`as_given`: float32, no normalisation, no
        padding, so ONNX shapes fixed by the graph must match the image).

        :func:`medrefine.onnx.scope_nodes` finds the nodes PyTorch exported for a submodule,
        e.g. ``scope_nodes(path, "head")``.

        A TorchScript network is taken through ONNX, export then split (``example``: an input
        ``(1, C, *spatial)`` float32; ``export_module`` is in :mod:`medrefine.onnx.export` and
        checks the export against ONNX Runtime)::

            export_module(torch.jit.load("net.pt"), example, "net.onnx")
            model = SplitModel.from_onnx("net.onnx", cut=[...], num_classes=2, spatial_dims=2)

        Raises:
            UnsupportedModelError: a cut name is unknown, the head has operators the converter
                does not support (all are named), the network's output is not logits of its
                input's spatial shape, the split does not reproduce the network, or
                ``num_classes`` differs from the network's output channels.
            NotFoundError: no file at ``path``.
            InputError: the file is empty or not a readable ONNX model (truncated, damaged,
                another kind of file); the message names it.
        """
        from medrefine.onnx.split import split_onnx

        prep = preprocessing or as_given(spatial_dims)
        parts = split_onnx(path, cut, spatial_dims, example, providers, prep.multiple)
        check_classes(num_classes, parts.channels)
        probe = example if example is not None else parts.probe
        with torch.no_grad():
            head, kind = logits_head(parts.head, parts.backbone(probe))
        return cls(
            parts.backbone,
            head,
            num_classes,
            spatial_dims,
            prep,
            tuple(class_names),
            name if name is not None else Path(path).stem,
            extractor=parts.extractor,
            backbone_digest=parts.digest,
            output_kind=kind,
        )

    def digest(self) -> str:
        """Hash of the backbone (part of the feature-cache key): ``backbone_digest`` if set, else
        of the backbone's weights and buffers."""
        if self.backbone_digest is not None:
            return self.backbone_digest
        if self._digest is None:
            h = hashlib.sha256()
            for key, value in self.backbone.state_dict().items():
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()[:16]
        return self._digest

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Whole network: logits for a backbone input ``(1, C, *spatial)``."""
        return self.head(*self.backbone(x))
