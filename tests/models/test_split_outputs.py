"""What a split head returns and what refine and add_class do with it: networks that end in a
softmax, shapes the head reads, outputs that are not one tensor, heads add_class cannot extend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from monai.networks.nets import UNet
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError


def _image(shape: tuple[int, ...]) -> np.ndarray:
    """Left half dark, right half bright, plus noise: a network's mask follows the halves."""
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 0.1, shape).astype(np.float32)
    image[..., shape[-1] // 2 :] += 1.0
    return image


class _SoftmaxNet(nn.Module):
    """Convolutions, then a softmax over the classes (the network outputs probabilities)."""

    def __init__(self, manual: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(8, 2, 1)
        self.manual = manual

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        if self.manual:  # through log-sum-exp: no softmax, nor exp(z) / sum(exp(z)), to see
            return torch.exp(z - torch.logsumexp(z, 1, keepdim=True))
        return torch.softmax(z * 20.0, dim=1)  # saturated: probabilities of 0 and 1


def test_a_final_softmax_is_cut_off_the_head() -> None:
    net = _SoftmaxNet().eval()
    model = mr.SplitModel.from_module(net, ["out"], 2, 2)
    assert model.output_kind == "softmax cut"
    x = torch.randn(1, 1, 20, 24)
    with torch.no_grad():
        got = model.head(*model.backbone(x))
        torch.testing.assert_close(got, net.logits(x) * 20.0)  # logits, not probabilities
        assert torch.equal(got.argmax(1), net(x).argmax(1))


def test_probabilities_without_a_softmax_operation_become_log_probabilities() -> None:
    net = _SoftmaxNet(manual=True).eval()
    model = mr.SplitModel.from_module(net, ["out"], 2, 2)
    assert model.output_kind == "log-probabilities"
    x = torch.randn(1, 1, 20, 24)
    with torch.no_grad():
        got = model.head(*model.backbone(x))
        torch.testing.assert_close(got, torch.log_softmax(net.logits(x), 1), atol=1e-4, rtol=0)


def test_a_network_ending_in_softmax_is_refined_until_it_honours_the_marks() -> None:
    session = mr.Session(mr.SplitModel.from_module(_SoftmaxNet().eval(), ["out"], 2, 2))
    mask = session.set_image(_image((24, 32)))
    wrong = np.argwhere(mask == mask[12, 4])[:12]  # pixels the network gives one class
    session.add(mr.Paint(1 - int(mask[12, 4]), wrong))
    result = session.refine()
    assert result.honoured_before == 0.0
    assert result.honoured_fraction == 1.0 and result.satisfied
    assert result.note == ""


class _DeadHead(nn.Module):
    """A head whose output does not depend on its weights: refinement cannot move it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 0.0


def test_a_refine_that_cannot_move_the_prediction_says_so() -> None:
    model = mr.SplitModel.from_modules(nn.Identity(), _DeadHead(), 2, 2)
    session = mr.Session(model)
    assert (session.set_image(_image((16, 16))) == 0).all()
    session.add(mr.Scribble(1, [(8, 4), (8, 12)], radius=1))
    result = session.refine()
    assert result.iterations > 0
    assert (result.mask[8, 4:13] == 1).all()  # the marks are written into the mask ...
    assert result.honoured_before == result.honoured_fraction == 0.0  # ... the head never moved
    assert "did not move the network's prediction at the marks" in result.note


class _ResizesToInput(nn.Module):
    """Features at half resolution, logits upsampled to the input's size read off ``x.shape``
    (as torchvision's segmentation models do)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = self.classifier(self.body(x))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def test_a_head_that_reads_the_input_size_splits_and_refines_on_odd_sizes() -> None:
    net = _ResizesToInput().eval()
    prep = mr.Preprocessing(2, normalize=False, multiple=2)
    model = mr.SplitModel.from_module(net, ["classifier"], 2, 2, preprocessing=prep)
    image = _image((33, 47))
    session = mr.Session(model)
    mask = session.set_image(image)
    assert mask.shape == image.shape
    with torch.no_grad():  # the network on the padded image, cut back to the image
        want = net(prep(image))[0, :, :33, :47].argmax(0).numpy()
    assert (mask == want).mean() > 0.999
    session.add(mr.Click(1 - int(mask[16, 10]), (16, 10), radius=2))
    result = session.refine()
    assert result.mask.shape == image.shape and result.honoured_fraction == 1.0


class _DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x), "aux": self.conv(x)}


def test_a_network_returning_a_dict_is_refused_with_the_remedy() -> None:
    with pytest.raises(
        UnsupportedModelError, match=r"dict with keys \['out', 'aux'\].*net\(x\)\['out'\]"
    ):
        mr.SplitModel.from_module(_DictOutput(), ["conv"], 2, 2)


@pytest.mark.parametrize(
    ("res_units", "why"),
    [(0, "transposed convolution"), (1, "an operation after that layer fixes the class count")],
)
def test_add_class_on_a_head_it_cannot_extend_is_a_typed_error(
    res_units: int, why: str, capfd: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(8, 16), strides=(2,), num_res_units=res_units).eval()
    session = mr.Session(mr.SplitModel.from_module(net, ["model.2"], 2, 2))
    before = session.set_image(_image((16, 16)))
    with pytest.raises(UnsupportedModelError, match=f"add_class cannot extend this head: .*{why}"):
        session.add_class("lesion")
    assert "Traceback" not in capfd.readouterr().err  # the typed error alone, no fx printout
    assert np.array_equal(session.mask, before)  # nothing changed
    session.add(mr.Click(1, (8, 8), radius=1))
    assert session.refine().mask.shape == (16, 16)  # and the session still refines
