"""Model conformance, torch.fx route: a network is split and run as its owner runs it, never
changed, and every network medrefine cannot take is refused at load by a typed error naming the
rule and the remedy. Each case is a small network built here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError


def _image(shape: tuple[int, ...] = (24, 32)) -> np.ndarray:
    """Left half dark, right half bright, plus noise (float32, (y, x))."""
    image = np.random.default_rng(0).normal(0.0, 0.3, shape).astype(np.float32)
    image[..., shape[-1] // 2 :] += 2.0
    return image


class _Normed(nn.Module):
    """conv 3x3 -> ``norm`` -> ReLU -> ``head`` (``head_norm`` between two 1x1 convs)."""

    def __init__(self, norm: nn.Module, head_norm: nn.Module | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = norm
        self.head = nn.Sequential(
            nn.Conv2d(6, 6, 1), head_norm or nn.Identity(), nn.ReLU(), nn.Conv2d(6, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.norm(self.conv(x))))


def _skewed(norm: nn.modules.batchnorm._NormBase) -> nn.Module:
    """``norm`` with running statistics far from any image's, so eval and train mode differ."""
    assert norm.running_mean is not None and norm.running_var is not None
    norm.running_mean.fill_(3.0)
    norm.running_var.fill_(0.05)
    return norm


def _state(net: nn.Module) -> dict[str, object]:
    return {
        "modes": {n: m.training for n, m in net.named_modules()},
        "grad": {n: p.requires_grad for n, p in net.named_parameters()},
        "tensors": {k: v.clone() for k, v in net.state_dict().items()},
    }


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    ta, tb = a["tensors"], b["tensors"]
    assert isinstance(ta, dict) and isinstance(tb, dict)
    same_tensors = ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    return a["modes"] == b["modes"] and a["grad"] == b["grad"] and same_tensors


def _owner_mask(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """The owner's mask: ``net`` in its own modes (on a copy: train mode moves statistics)."""
    with torch.no_grad():
        out = copy.deepcopy(net)(torch.from_numpy(image)[None, None])
    return out[0].argmax(0).numpy()


NORMS = {
    "instance-norm-tracking": lambda: _Normed(
        _skewed(nn.InstanceNorm2d(6, affine=True, track_running_stats=True))
    ),
    "batch-norm": lambda: _Normed(_skewed(nn.BatchNorm2d(6))),
    "batch-norm-in-head": lambda: _Normed(nn.Identity(), _skewed(nn.BatchNorm2d(6))),
}


@pytest.mark.parametrize("name", NORMS)
def test_train_mode_norms_run_as_the_owner_runs_them(name: str) -> None:
    net = NORMS[name]().eval()
    for m in net.modules():  # the norms alone in train mode, as some networks ship
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.train()
    image = _image()
    want = _owner_mask(net, image)
    with torch.no_grad():
        assert not np.array_equal(want, _owner_mask(copy.deepcopy(net).eval(), image))
    before = _state(net)
    model = mr.SplitModel.from_module(net, ["head"], 2, 2)
    assert _same(before, _state(net))  # modes, requires_grad and statistics untouched
    session = mr.Session(model)
    mask = session.set_image(image)
    assert np.array_equal(mask, want)
    head_state = {k: v.clone() for k, v in model.head.state_dict().items()}
    session.add(mr.Click(1 - int(mask[12, 4]), (12, 4), radius=2))
    session.refine()
    # fine-tuning (gradients through the head in eval mode) moves weights, never statistics
    after = session._head.state_dict()
    buffers = {k for k, _ in session._head.named_buffers()}
    assert all(torch.equal(after[k], head_state[k]) for k in buffers)
    assert all(torch.equal(v, head_state[k]) for k, v in model.head.state_dict().items())
    assert _same(before, _state(net))


def test_eval_mode_norm_statistics_stay_through_a_refine() -> None:
    net = _Normed(nn.Identity(), _skewed(nn.BatchNorm2d(6))).eval()
    session = mr.Session(mr.SplitModel.from_module(net, ["head"], 2, 2))
    mask = session.set_image(_image())
    assert np.array_equal(mask, _owner_mask(net, _image()))
    stats = {k: v.clone() for k, v in session._head.named_buffers()}
    assert stats  # the head's BatchNorm keeps its running statistics
    session.add(mr.Click(1 - int(mask[12, 4]), (12, 4), radius=2))
    assert session.refine().iterations > 0  # gradient steps through the BatchNorm ran
    assert all(torch.equal(v, stats[k]) for k, v in session._head.named_buffers())


def test_from_module_leaves_every_submodules_mode_and_gradient_flag() -> None:
    net = _Normed(nn.BatchNorm2d(6))
    net.conv.eval()  # mixed modes, one frozen parameter
    net.head[0].weight.requires_grad_(False)
    before = _state(net)
    mr.SplitModel.from_module(net, ["head"], 2, 2)
    assert _same(before, _state(net))


class _Dropout(nn.Module):
    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout2d(0.5)
        self.head = nn.Conv2d(4, 2, 1)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        f = F.dropout(f, 0.5, training=True) if self.functional else self.drop(f)
        return self.head(f)


def test_train_mode_dropout_is_refused_by_name_with_the_remedy() -> None:
    with pytest.raises(UnsupportedModelError, match=r"'drop' of _Dropout run in train mode.*eval"):
        mr.SplitModel.from_module(_Dropout(), ["head"], 2, 2)
    with pytest.raises(UnsupportedModelError, match=r"changes from run to run.*dropout"):
        mr.SplitModel.from_module(_Dropout(functional=True).eval(), ["head"], 2, 2)
    assert mr.SplitModel.from_module(_Dropout().eval(), ["head"], 2, 2).num_classes == 2


class _Shrinks(nn.Module):
    """A network whose output is smaller than its input: strided, or unpadded."""

    def __init__(self, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=stride, padding=padding)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)))


@pytest.mark.parametrize(
    ("stride", "padding", "out", "why"),
    [
        (2, 1, r"\(1, 2, 32, 32\)", r"2 times smaller.*F\.interpolate"),
        (1, 0, r"\(1, 2, 62, 62\)", r"lost \[1, 1\] pixels at each border.*padding"),
    ],
    ids=["stride-2", "unpadded"],
)
def test_an_output_smaller_than_the_input_is_refused_at_load(
    stride: int, padding: int, out: str, why: str
) -> None:
    rule = r"spatial shape of its input \(1, 1, 64, 64\): medrefine needs one logit per input pixel"
    with pytest.raises(
        UnsupportedModelError, match=f"output {out} does not have the {rule}.*{why}"
    ):
        mr.SplitModel.from_module(_Shrinks(stride, padding).eval(), ["head"], 2, 2)


class _WithAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        self.aux = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.relu(self.conv(x))
        return {"out": self.head(f), "aux": self.aux(f)}


def test_a_dict_output_with_aux_is_refused_naming_the_keys_and_the_remedy() -> None:
    with pytest.raises(
        UnsupportedModelError, match=r"dict with keys \['out', 'aux'\].*auxiliary.*\['out'\]"
    ):
        mr.SplitModel.from_module(_WithAux().eval(), ["head"], 2, 2)


class _HandSoftmax(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 3, 1)
        self.form = form

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x))) * 4.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        if self.form == "keepdim":
            return z.exp() / z.exp().sum(1, keepdim=True)
        if self.form == "no-keepdim":
            return torch.exp(z) / torch.exp(z).sum(1)
        e = (z - z.max(1, keepdim=True)[0]).exp()  # "stable": the peak subtracted first
        return e / e.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("form", ["keepdim", "no-keepdim", "stable"])
def test_a_hand_written_softmax_is_cut_off_like_torch_softmax(form: str) -> None:
    net = _HandSoftmax(form).eval()
    model = mr.SplitModel.from_module(net, ["head"], 3, 2)
    assert model.output_kind == "softmax cut"
    x = torch.from_numpy(_image())[None, None]
    with torch.no_grad():
        torch.testing.assert_close(model.head(*model.backbone(x)), net.logits(x))
    session = mr.Session(model)
    mask = session.set_image(_image())
    new = session.add_class("lesion")  # a head of logits extends
    session.add(mr.Click(new, (12, 20), radius=1))
    session.add(mr.Click(int(mask[12, 4]), (12, 4), radius=1))
    assert session.refine().mask[12, 20] == new


def test_spatial_dims_that_disagree_with_the_network_are_named() -> None:
    with pytest.raises(
        UnsupportedModelError,
        match=r"spatial_dims=3, but its first convolution 'conv' is a "
        r"Conv2d \(2 spatial axes\): pass spatial_dims=2",
    ):
        mr.SplitModel.from_module(_Shrinks(1, 1).eval(), ["head"], 2, 3)


class _BranchesOnTensor(nn.Module):
    """Adds a doubled feature when its input is not a tensor, as an fx placeholder is not: the
    traced graph differs from the network and fails, in torch.fx's generated code, where the
    network runs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(40)])
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(self.stem(x))
        g = f if isinstance(x, torch.Tensor) else torch.cat([f, f], 1)
        return self.head(f + g)


def test_a_split_that_fails_is_refused_without_printing_torch_fx_code(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(UnsupportedModelError, match=r"split network fails"):
        mr.SplitModel.from_module(_BranchesOnTensor().eval(), ["head"], 2, 2)
    assert capfd.readouterr().err == ""
