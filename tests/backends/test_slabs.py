"""The backbone slab by slab: whole-image features (instance norms included), bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import medrefine as mr
from medrefine.backends import TorchBackend
from medrefine.backends.slabs import run_slabs, slab_plan, write
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.budget.features import compute_features, storage_dtype
from medrefine.errors import InputError
from medrefine.models.preprocess import Preprocessing
from medrefine.models.split import SplitModel
from medrefine.models.unet import UNet
from splits import split


def _image(shape: tuple[int, ...], seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize(("dims", "shape"), [(2, (97, 90)), (3, (41, 36, 30))])
def test_slab_features_equal_whole_image_features(
    dims: int, shape: tuple[int, ...], net2d: UNet, net3d: UNet
) -> None:
    model = split(net2d if dims == 2 else net3d)
    assert any(
        isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d) for m in model.backbone.modules()
    )
    prep = model.preprocessing
    x = prep(_image(shape))
    gm = slab_plan(model.backbone, 1, dims, prep.multiple)
    assert gm is not None
    # slabs of one or two planes of the widest tensor: a slab border at almost every plane
    plane = int(np.prod(x.shape[3:]))
    with torch.no_grad():
        got = write(run_slabs(gm, x, 4 * 16 * plane), shape, torch.float32, 4 * 16 * plane)
        whole = model.backbone(x)
    inside = (slice(None), slice(None)) + tuple(slice(0, s) for s in shape)
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    for g, w in zip(got, whole, strict=True):
        assert g.is_contiguous(memory_format=layout)
        torch.testing.assert_close(g, w[inside], rtol=0, atol=1e-5 * float(w.abs().max()))


def test_an_instance_norm_with_wrong_statistics_would_be_seen(net2d: UNet) -> None:
    """The comparison above can fail: statistics of one slab instead of the image differ."""
    model = split(net2d)
    x = model.preprocessing(_image((64, 48)))
    gm = slab_plan(model.backbone, 1, 2, model.preprocessing.multiple)
    assert gm is not None
    with torch.no_grad():
        whole = model.backbone(x)[0]
        top = model.backbone(x[:, :, :32])[0]  # the first half as if it were the image
    assert float((top - whole[:, :, :32]).abs().max()) > 1e-2


class _Strided(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def test_operations_it_cannot_run_exactly_leave_the_backbone_whole() -> None:
    traced = torch.fx.symbolic_trace(_Strided())
    assert slab_plan(traced, 1, 2, 2) is None
    assert slab_plan(nn.Conv2d(1, 2, 3, padding=1), 1, 2, 1) is None  # not a traced graph


def test_float16_storage_over_the_byte_limit() -> None:
    limits = mr.SessionLimits(float16_feature_bytes=1000)
    assert storage_dtype(10, (5, 5), limits) == torch.float32  # 1000 bytes: not over
    assert storage_dtype(10, (5, 6), limits) == torch.float16
    assert storage_dtype(10**6, (10**3,) * 3, mr.SessionLimits(float16_feature_bytes=None)) == (
        torch.float32
    )


@pytest.mark.parametrize("name", ["slab_voxels", "float16_feature_bytes"])
def test_limits_refuse_nonsense(name: str) -> None:
    for bad in (0, -1, True, 2.5):
        with pytest.raises(InputError, match=name):
            mr.SessionLimits(**{name: bad})  # type: ignore[arg-type]


def test_compute_features_takes_the_slab_path_and_halves_storage(
    model3d: SplitModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    prep = model3d.preprocessing
    shape = (21, 18, 19)
    x = prep(_image(shape))
    backend = TorchBackend(model3d.backbone)
    whole = compute_features(backend, x, shape, prep.multiple, mr.SessionLimits(slab_voxels=None))
    limits = mr.SessionLimits(slab_voxels=1, float16_feature_bytes=1)

    def whole_pass(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise AssertionError("the slab path never runs the whole backbone")

    monkeypatch.setattr(backend, "features", whole_pass)
    half = compute_features(backend, x, shape, prep.multiple, limits)
    for h, w in zip(half, whole, strict=True):
        assert w.dtype == torch.float32 and h.dtype == torch.float16
        assert h.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(h.float(), w, rtol=2e-3, atol=2e-3 * float(w.abs().max()))


@pytest.mark.parametrize("dims", [2, 3])
def test_session_masks_with_slabs_and_float16_features(
    dims: int, model2d: SplitModel, model3d: SplitModel
) -> None:
    """The network's mask and the refined masks of the fixture networks are the same whole in
    float32 and slab by slab in float16 (the zoo's figures: docs/deploy.md)."""
    model = model2d if dims == 2 else model3d
    shape = (67, 58) if dims == 2 else (23, 26, 21)
    image = _image(shape, seed=5) + 2.0 * (np.indices(shape).sum(0) % 16 < 8)
    masks = []
    for limits in (
        mr.SessionLimits(slab_voxels=None, float16_feature_bytes=None),
        mr.SessionLimits(slab_voxels=1, float16_feature_bytes=1),
    ):
        session = mr.Session(model, cache=FeatureCache(max_bytes=0), limits=limits)
        out = [session.set_image(image)]
        session.add(mr.Click(label=1, point=tuple(s // 3 for s in shape), radius=2))
        out.append(session.refine().mask)
        masks.append(out)
    for a, b in zip(*masks, strict=True):
        assert (a == b).mean() >= 0.999, (a != b).sum()


def test_a_multichannel_probe_uses_the_preprocessing_channels() -> None:
    net = UNet(mr.models.unet.UNetConfig(2, 3, 2, base_channels=4, depth=2, head_hidden=4))
    prep = Preprocessing(2, channels=3, multiple=net.config.stride, normalize=False)
    model = SplitModel.from_module(
        net, head=["head"], num_classes=2, spatial_dims=2, preprocessing=prep
    )
    assert slab_plan(model.backbone, 3, 2, prep.multiple) is not None


def test_only_float32_features_change_dtype() -> None:
    """Integer or float64 features (indices, sizes a head reads) keep their dtype and values."""
    from medrefine.engine.budget.features import stored

    index = torch.arange(2 * 3 * 4).reshape(1, 2, 3, 4)
    wide = index.double() / 7
    for f in (index, wide):
        kept = stored(f, (3, 4), (3, 4), torch.float16)
        assert kept.dtype == f.dtype and torch.equal(kept, f)
    half = stored(wide.float(), (3, 4), (2, 3), torch.float16)
    assert half.dtype == torch.float16 and half.shape == (1, 2, 2, 3)
