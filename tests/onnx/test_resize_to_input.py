"""A head that resizes its logits to the input image's shape (torchvision's segmentation models
do): exported to ONNX, the Resize's sizes come from ``Shape(image)``; the converted head
computes them from a size carrier, so it follows every image, and crops only where a crop
resizes as the whole image does."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError
from medrefine.onnx import scope_nodes
from medrefine.onnx.shape_ops import gather


class _ToInput(nn.Module):
    """A strided body, a 1x1 head, logits resized to the input's spatial size: 2D (y, x),
    stride 4, bilinear; 3D (z, y, x), stride 2, trilinear."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        stride = 4 if dims == 2 else 2
        self.body = nn.Sequential(conv(1, 8, 3, stride=stride, padding=1), nn.ReLU())
        self.head = conv(8, 2, 1)
        self.mode = "bilinear" if dims == 2 else "trilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        return F.interpolate(self.head(self.body(x)), size=size, mode=self.mode)


class _ToArithmetic(_ToInput):
    """Logits resized to sizes computed by integer arithmetic on the input's shape: y rounded
    down and x rounded up to a multiple of the stride (4), so a side that is not a multiple
    tells integer division from a float one; the input's size on a padded input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] // 4 * 4, (x.shape[3] + 3) // 4 * 4)
        return F.interpolate(self.head(self.body(x)), size=size, mode=self.mode)


def _export(
    dims: int, example: tuple[int, ...], path: Path, network: type[_ToInput] = _ToInput
) -> Path:
    """``network(dims)`` exported by ``torch.onnx.export`` with dynamic spatial axes."""
    torch.manual_seed(0)
    spatial = {i + 2: f"s{i}" for i in range(dims)}
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, still used
        warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        torch.onnx.export(
            network(dims).eval(),
            (torch.randn(1, 1, *example),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": spatial, "logits": spatial},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2D ``_ToInput`` exported at 32x48 px."""
    return _export(2, (32, 48), tmp_path_factory.mktemp("resize") / "to-input.onnx")


def _onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """The whole exported network's output, run by ONNX Runtime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"image": x})[0]
    return out


def test_the_sizes_come_from_the_image_the_head_is_run_on(exported: Path) -> None:
    ops = [n.op_type for n in onnx.load(str(exported)).graph.node]
    assert "Shape" in ops and "Resize" in ops  # the sizes really are computed in the graph
    model = mr.SplitModel.from_onnx(exported, scope_nodes(exported, "head"), 2, 2)
    gen = torch.Generator().manual_seed(1)
    for size in [(32, 48), (30, 45), (17, 64)]:  # the export's size, and others
        x = torch.randn((1, 1, *size), generator=gen)
        features = model.backbone(x)
        carriers = [f for f in features if f.shape[1] == 0]
        assert [tuple(f.shape) for f in carriers] == [(1, 0, *size)]  # the image's size, empty
        with torch.no_grad():
            got = model.head(*features)
        want = torch.from_numpy(_onnx_logits(exported, x.numpy()))
        assert got.shape == (1, 2, *size)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_sizes_from_integer_arithmetic_on_the_shape_follow_the_image(tmp_path: Path) -> None:
    path = _export(2, (32, 48), tmp_path / "arithmetic.onnx", _ToArithmetic)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Div", "Mul", "Add", "Resize"} <= ops  # computed in the graph, not folded
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2)
    gen = torch.Generator().manual_seed(4)
    for size in [(32, 48), (31, 45), (17, 63)]:  # 31 // 4 * 4 is 28, not 31
        x = torch.randn((1, 1, *size), generator=gen)
        features = model.backbone(x)
        assert [tuple(f.shape) for f in features if f.shape[1] == 0] == [(1, 0, *size)]
        with torch.no_grad():
            got = model.head(*features)
        want = torch.from_numpy(_onnx_logits(path, x.numpy()))
        assert got.shape == want.shape == (1, 2, size[0] // 4 * 4, (size[1] + 3) // 4 * 4)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    prep = mr.Preprocessing(2, multiple=4, normalize=False)  # the output is the padded input's
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2, preprocessing=prep)
    image = np.random.default_rng(5).normal(size=(1, 30, 45)).astype(np.float32)
    session = mr.Session(model)
    mask = session.set_image(image)
    want_mask = _onnx_logits(path, prep(image).numpy())[0, :, :30, :45].argmax(0)
    assert np.array_equal(mask, want_mask)
    for click in _clicks(mask):
        session.add(click)
    result = session.refine()
    assert result.mode == "crop" and result.honoured_fraction > result.honoured_before


class _ToRemainder(_ToInput):
    """Logits resized to the input's size rounded down to a multiple of 4 by ``%``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] - x.shape[2] % 4, x.shape[3] - x.shape[3] % 4)
        return F.interpolate(self.head(self.body(x)), size=size, mode=self.mode)


def test_sizes_from_a_remainder_of_the_shape_follow_the_image(tmp_path: Path) -> None:
    path = _export(2, (32, 48), tmp_path / "remainder.onnx", _ToRemainder)
    assert "Mod" in {n.op_type for n in onnx.load(str(path)).graph.node}
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2)
    for size in [(32, 48), (31, 45)]:
        x = torch.randn((1, 1, *size), generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            got = model.head(*model.backbone(x))
        want = torch.from_numpy(_onnx_logits(path, x.numpy()))
        assert got.shape == want.shape == (1, 2, size[0] // 4 * 4, size[1] // 4 * 4)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_onnx_div_truncates_integers_toward_zero_and_divides_floats() -> None:
    from medrefine.onnx.ops import divide

    ints = torch.tensor([7, -7, 6], dtype=torch.int64)
    got = divide(ints, 2)
    assert got.dtype == torch.int64 and got.tolist() == [3, -3, 3]  # C's /, not floor's -4
    assert divide(ints, torch.tensor(-2)).tolist() == [-3, 3, -3]
    assert divide(torch.tensor([7.0]), 2).tolist() == [3.5]
    assert divide(torch.tensor([7]), 2.0).tolist() == [3.5]  # a float operand: true division


def _clicks(mask: np.ndarray) -> list[mr.Click]:
    """One click of class 1 where the network says 0 and one of 0 where it says 1, each at the
    pixel farthest inside that region."""
    from scipy.ndimage import distance_transform_edt

    clicks = []
    for label in (0, 1):
        wrong = mask != label
        if wrong.any():
            point = np.unravel_index(int(np.argmax(distance_transform_edt(wrong))), mask.shape)
            radius = 2 if mask.ndim == 2 else 1
            clicks.append(mr.Click(label, tuple(int(v) for v in point), radius=radius))
    return clicks


@pytest.mark.parametrize(
    ("multiple", "mode"),
    [
        (4, "crop"),  # padded to a multiple of the stride: a crop resizes as the whole image
        (1, "full"),  # 30x45 from 8x12 features: a crop would resize by another ratio
    ],
)
def test_a_session_crops_only_where_the_crop_resizes_as_the_image(
    exported: Path, multiple: int, mode: str
) -> None:
    prep = mr.Preprocessing(2, multiple=multiple, normalize=False)
    model = mr.SplitModel.from_onnx(
        exported, scope_nodes(exported, "head"), 2, 2, preprocessing=prep
    )
    image = np.random.default_rng(2).normal(size=(1, 30, 45)).astype(np.float32)
    session = mr.Session(model)
    mask = session.set_image(image)
    padded = prep(image).numpy()
    want = _onnx_logits(exported, padded)[0, :, :30, :45].argmax(0)
    assert np.array_equal(mask, want)  # the network's own mask, whichever mode
    for click in _clicks(mask):
        session.add(click)
    result = session.refine()
    assert result.mode == mode
    assert result.honoured_fraction > result.honoured_before
    new = session.add_class("lesion")  # the resize follows the head's new channel count
    session.add(mr.Click(new, (15, 22), radius=2))
    after = session.refine()
    assert after.mask[15, 22] == new and after.mode == mode


def test_a_3d_head_follows_the_volume_and_crops(tmp_path: Path) -> None:
    path = _export(3, (8, 12, 16), tmp_path / "to-input-3d.onnx")
    prep = mr.Preprocessing(3, multiple=2, normalize=False)
    model = mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 3, preprocessing=prep)
    volume = np.random.default_rng(3).normal(size=(1, 11, 14, 9)).astype(np.float32)
    x = prep(volume)
    with torch.no_grad():
        got = model.head(*model.backbone(x))
    want = _onnx_logits(path, x.numpy())
    assert got.shape == (1, 2, 12, 14, 10)  # padded to even sides, not the export's size
    torch.testing.assert_close(got, torch.from_numpy(want), rtol=1e-4, atol=1e-5)
    session = mr.Session(model)
    mask = session.set_image(volume)
    assert np.array_equal(mask, want[0, :, :11, :14, :9].argmax(0))
    for click in _clicks(mask):
        session.add(click)
    result = session.refine()
    assert result.mode == "crop" and result.honoured_fraction > result.honoured_before


def test_a_gather_outside_its_tensor_is_a_runtime_error() -> None:
    # the head runner treats a RuntimeError on a crop as "evaluate the whole image"
    data = torch.arange(6).reshape(2, 3)
    assert gather(data, torch.tensor([-1, 0]), 1).tolist() == [[2, 0], [5, 3]]
    with pytest.raises(RuntimeError, match=r"Gather indices \[3\] outside axis 1 of \(2, 3\)"):
        gather(data, torch.tensor([3]), 1)
    with pytest.raises(RuntimeError, match=r"Gather indices \[5\] outside axis 0 of \(3,\)"):
        gather(torch.zeros(3), torch.tensor([5]), 0)  # torch's own error is an IndexError here


def _model(nodes: list[onnx.NodeProto], weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``image`` (1, 1, y, x), dynamic (y, x) -> Relu ``f`` -> ``nodes`` -> ``out``."""
    body = helper.make_node("Relu", ["image"], ["f"], name="body")
    graph = helper.make_graph(
        [body, *nodes],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "y", "x"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _resize(source: str = "f", name: str = "head") -> onnx.NodeProto:
    """``out`` = ``source`` resized to ``sizes``, nearest neighbour as ``F.interpolate`` does."""
    return helper.make_node(
        "Resize",
        [source, "", "", "sizes"],
        ["out"],
        name=name,
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def _refused(model: onnx.ModelProto, tmp_path: Path, match: str) -> None:
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedModelError, match=match):
        mr.SplitModel.from_onnx(path, ["head"], 1, 2, example=torch.randn(1, 1, 8, 8))


def test_sizes_computed_from_the_images_values_are_refused_naming_the_operator(
    tmp_path: Path,
) -> None:
    nodes = [  # sizes = (1, 1) followed by twice the image's largest value, as integers
        helper.make_node("ReduceMax", ["image"], ["peak"], name="peak", keepdims=0),
        helper.make_node("Mul", ["peak", "two"], ["big"], name="twice"),
        helper.make_node("Cast", ["big"], ["side"], name="cast", to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["side", "zero"], ["side1"], name="vec"),
        helper.make_node("Concat", ["ones", "side1", "side1"], ["sizes"], name="sizes", axis=0),
        _resize(),
    ]
    weights = {
        "two": np.array(2, np.float32),
        "zero": np.array([0], np.int64),
        "ones": np.array([1, 1], np.int64),
    }
    # the Mul and Cast are shape arithmetic; the values come from the ReduceMax
    _refused(
        _model(nodes, weights),
        tmp_path,
        r"the head reads 'sizes', a 1-D tensor computed by ReduceMax node 'peak'",
    )


def test_a_size_vector_the_head_cannot_compute_is_refused_naming_the_operator(
    tmp_path: Path,
) -> None:
    # the head (from 'h') resizes to (N, C) of its own tensor and the image's |height| twice:
    # Abs is no shape arithmetic, so that height would be a cached vector, not a feature map
    nodes = [
        helper.make_node("Relu", ["f"], ["g"], name="h"),
        helper.make_node("Shape", ["g"], ["gshape"], name="gshape"),
        helper.make_node("Slice", ["gshape", "first", "two", "axis"], ["nc"], name="nc"),
        helper.make_node("Shape", ["image"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "two"], ["y"], name="y"),
        helper.make_node("Abs", ["y"], ["ay"], name="absolute"),
        helper.make_node("Concat", ["nc", "ay", "ay"], ["sizes"], name="sizes", axis=0),
        _resize("g", "resize"),
    ]
    weights = {
        "first": np.array([0], np.int64),
        "two": np.array([2], np.int64),
        "axis": np.array([0], np.int64),
    }
    path = tmp_path / "g.onnx"
    onnx.save(_model(nodes, weights), str(path))
    with pytest.raises(UnsupportedModelError, match=r"1-D tensor computed by Abs node 'absolute'"):
        mr.SplitModel.from_onnx(path, ["h"], 1, 2, example=torch.randn(1, 1, 8, 8))


def test_a_shape_sliced_backwards_is_refused_naming_the_slice(tmp_path: Path) -> None:
    nodes = [  # sizes = (1, 1, x, y): the image's sides swapped by a step of -1
        helper.make_node("Shape", ["image"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "last", "first", "axis", "back"], ["yx"], name="rev"),
        helper.make_node("Concat", ["ones", "yx"], ["sizes"], name="sizes", axis=0),
        _resize(),
    ]
    weights = {
        "last": np.array([3], np.int64),
        "first": np.array([1], np.int64),
        "axis": np.array([0], np.int64),
        "back": np.array([-1], np.int64),
        "ones": np.array([1, 1], np.int64),
    }
    _refused(_model(nodes, weights), tmp_path, r"Slice node 'rev': steps \[-1\]")
