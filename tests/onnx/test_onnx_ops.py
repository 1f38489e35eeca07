"""The ONNX head converter, operator by operator: exported PyTorch heads come back equal and
trainable; pointwise ones come back in the form the fast path accepts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import medrefine as mr
from medrefine.engine.head.pointwise import as_row_head
from medrefine.errors import UnsupportedModelError
from medrefine.onnx import scope_nodes
from medrefine.onnx.export import export_module


class _Net(nn.Module):
    """Two conv features ``a``, ``b`` (4 channels each) -> ``head(a)`` or ``head(a, b)``;
    ``scale``: the features resized by it (nearest), for a head that resizes them back to the
    input's size (a network's output must have its input's spatial shape)."""

    def __init__(self, head: nn.Module, dims: int, pair: bool = False, scale: float = 1) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.a, self.b, self.pair = conv(1, 4, 3, padding=1), conv(1, 4, 3, padding=1), pair
        self.head, self.scale = head, scale

    def _feature(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        f = conv(x)
        return f if self.scale == 1 else F.interpolate(f, scale_factor=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self._feature(self.a, x)
        return self.head(a, self._feature(self.b, x)) if self.pair else self.head(a)


class _Binary(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn, self.out = fn, nn.Conv2d(4 if fn is not _cat else 8, 2, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(self.fn(a, b))


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([a, b], dim=1)


class _Scalars(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x * 2.0 + 1.0)


class _ChannelOffset(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.linspace(-1, 1, 4).reshape(1, 4, 1, 1))
        self.conv = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x + self.offset)


def _bn(dims: int) -> nn.Module:
    bn = nn.BatchNorm2d(8) if dims == 2 else nn.BatchNorm3d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)  # type: ignore[operator]
        bn.running_var.uniform_(0.5, 2)  # type: ignore[operator]
        bn.weight.uniform_(0.5, 2)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return nn.Sequential(conv(4, 8, 1), bn, nn.ReLU(), conv(8, 3, 1))


def _up(mode: str, align: bool | None = None) -> nn.Module:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode=mode, align_corners=align), nn.Conv2d(4, 2, 1)
    )


# (id, head, spatial dims, pair of features, pointwise)
CASES: list[tuple[str, Callable[[], nn.Module], int, bool, bool]] = [
    ("conv3x3", lambda: nn.Conv2d(4, 3, 3, padding=1), 2, False, False),
    (
        "conv-strided",
        lambda: nn.Conv2d(4, 4, 3, 2, padding=2, dilation=2, groups=2),
        2,
        False,
        False,
    ),
    ("bn-relu-2d", lambda: _bn(2), 2, False, True),
    ("bn-relu-3d", lambda: _bn(3), 3, False, True),
    ("conv-transpose", lambda: nn.ConvTranspose2d(4, 3, 2, stride=2), 2, False, False),
    (
        "conv-transpose-3d",
        lambda: nn.ConvTranspose3d(4, 2, 3, 2, padding=1, output_padding=1),
        3,
        False,
        False,
    ),
    (
        "instance-norm",
        lambda: nn.Sequential(nn.InstanceNorm2d(4, affine=True), nn.Conv2d(4, 2, 1)),
        2,
        False,
        False,
    ),
    (
        "instance-norm-3d",
        lambda: nn.Sequential(nn.InstanceNorm3d(4), nn.Conv3d(4, 2, 1)),
        3,
        False,
        False,
    ),
    (
        "prelu",
        lambda: nn.Sequential(nn.PReLU(4, 0.1), nn.Conv2d(4, 2, 1), nn.PReLU()),
        2,
        False,
        True,
    ),
    (
        "leaky-sigmoid-tanh",
        lambda: nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(4, 2, 1), nn.Sigmoid(), nn.Tanh()),
        2,
        False,
        True,
    ),
    ("softmax", lambda: nn.Sequential(nn.Conv2d(4, 3, 1), nn.Softmax(dim=1)), 2, False, True),
    ("add", lambda: _Binary(torch.add), 2, True, True),
    ("mul", lambda: _Binary(torch.mul), 2, True, True),
    ("concat", lambda: _Binary(_cat), 2, True, True),
    ("scalar-constants", _Scalars, 2, False, True),
    ("tensor-constant", _ChannelOffset, 2, False, False),
    ("resize-nearest", lambda: _up("nearest"), 2, False, False),
    ("resize-bilinear", lambda: _up("bilinear", False), 2, False, False),
    ("resize-align-corners", lambda: _up("bilinear", True), 2, False, False),
    (
        "resize-trilinear",
        lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(4, 2, 1)),
        3,
        False,
        False,
    ),
]


# Heads that resize: their features at the scale the head undoes.
FEATURE_SCALE = {
    "conv-strided": 2.0,
    "conv-transpose": 0.5,
    "conv-transpose-3d": 0.5,
    "resize-nearest": 0.5,
    "resize-bilinear": 0.5,
    "resize-align-corners": 0.5,
    "resize-trilinear": 0.5,
}


@pytest.mark.parametrize(
    ("name", "head", "dims", "pair", "pointwise"), CASES, ids=[c[0] for c in CASES]
)
def test_head_converts_exactly(
    name: str,
    head: Callable[[], nn.Module],
    dims: int,
    pair: bool,
    pointwise: bool,
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    net = _Net(head(), dims, pair, FEATURE_SCALE.get(name, 1)).eval()
    size = (8, 12) if dims == 2 else (6, 8, 4)
    path = export_module(net, torch.randn(1, 1, *size), tmp_path / "net.onnx").path
    with torch.no_grad():
        k = net(torch.zeros(1, 1, *size)).shape[1]
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), k, dims)
    x = torch.randn(1, 1, *(s + 2 for s in size))  # another size than the export
    features = model.backbone(x)
    assert len(features) == (2 if pair else 1)
    with torch.no_grad():
        got = model.head(*features)
    # a final softmax is cut off the head (refinement needs logits); it returns what entered it
    if model.output_kind == "softmax cut":
        got = got.softmax(1)
    assert (model.output_kind == "softmax cut") == (
        head().__class__ is nn.Sequential and isinstance(head()[-1], nn.Softmax)
    )
    torch.testing.assert_close(got, net(x), rtol=1e-4, atol=1e-5)
    assert (as_row_head(model.head) is not None) == pointwise
    model.head(*features).square().sum().backward()
    params = list(model.head.parameters())
    assert params and all(p.requires_grad and p.grad is not None for p in params)


def _graph_model(
    nodes: list[onnx.NodeProto], weights: dict[str, np.ndarray], opset: int = 17
) -> onnx.ModelProto:
    """``image`` (1, 1, 8, 8) -> Relu ``body`` -> ``nodes`` -> ``out``."""
    body = helper.make_node("Relu", ["image"], ["f"], name="body")
    graph = helper.make_graph(
        [body, *nodes],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _refused(model: onnx.ModelProto, tmp_path: Path, match: str) -> None:
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedModelError, match=match):
        mr.SplitModel.from_onnx(path, ["head"], 2, 2)


def test_asymmetric_padding_is_refused(tmp_path: Path) -> None:
    conv = helper.make_node("Conv", ["f", "w"], ["out"], name="head", pads=[0, 0, 1, 1])
    w = np.ones((2, 1, 2, 2), np.float32)
    _refused(_graph_model([conv], {"w": w}), tmp_path, r"Conv node 'head': asymmetric padding")


def test_cubic_resize_is_refused(tmp_path: Path) -> None:
    scales = np.array([1, 1, 2, 2], np.float32)
    resize = helper.make_node("Resize", ["f", "", "s"], ["out"], name="head", mode="cubic")
    _refused(_graph_model([resize], {"s": scales}), tmp_path, r"Resize node 'head': mode 'cubic'")


def test_old_opset_softmax_over_several_axes_is_refused(tmp_path: Path) -> None:
    softmax = helper.make_node("Softmax", ["f"], ["out"], name="head", axis=1)
    _refused(_graph_model([softmax], {}, opset=11), tmp_path, "softmax over axes 1..")


def test_computed_weights_are_refused(tmp_path: Path) -> None:
    conv = helper.make_node("Conv", ["f", "f"], ["out"], name="head")
    _refused(_graph_model([conv], {}), tmp_path, r"input 1 \('f'\) must be a constant")


def test_interpolate_to_a_fixed_size(tmp_path: Path) -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=(10, 14), mode="nearest")

    net = _Net(nn.Sequential(nn.Conv2d(4, 2, 1), Fixed()), 2).eval()
    path = export_module(net, torch.randn(1, 1, 8, 8), tmp_path / "n.onnx").path
    # the network takes 10 x 14 images alone: its output has their size
    example = torch.randn(1, 1, 10, 14)
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2, example=example)
    x = torch.randn(1, 1, 6, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
