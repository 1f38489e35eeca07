"""Spatial context for a pointwise head: box means against a brute-force mean, the coarse grid
read at pixels equal to the map over the image, and a head with an offset that stays
pointwise and takes a class added later."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import medrefine as mr
from medrefine.engine.head.context import (
    _box_mean,
    coarse_context,
    context_map,
    context_rows,
    offset_head,
)
from medrefine.engine.head.pointwise import as_row_head
from medrefine.engine.head.runner import resize_outputs


def test_box_means_count_only_cells_inside_the_grid() -> None:
    x = torch.randn(1, 2, 7, 9, 5, generator=torch.Generator().manual_seed(0))
    got = _box_mean(x, 3)
    for z, y, w in [(0, 0, 0), (3, 4, 2), (6, 8, 4), (0, 5, 4)]:
        box = x[0, :, max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(w - 1, 0) : w + 2]
        torch.testing.assert_close(got[0, :, z, y, w], box.mean((1, 2, 3)))


@pytest.mark.parametrize("shape", [(37, 50), (19, 26, 11)])
def test_rows_read_at_pixels_equal_the_map_over_the_image(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    features = [torch.randn((1, 5, *shape), generator=g), torch.randn((1, 3, *shape), generator=g)]
    grid = coarse_context(features, shape, (8, 24))
    coarse = tuple(-(-s // 4) for s in shape)
    assert grid.shape == (1, 16, *coarse)
    weight = torch.randn(3, 16, generator=g)
    whole = context_map(grid, weight, shape)
    assert whole.shape == (1, 3, *shape)
    index = torch.arange(int(np.prod(shape)))
    torch.testing.assert_close(
        context_rows(grid, index, shape) @ weight.T, whole.reshape(3, -1).T, atol=1e-5, rtol=1e-5
    )


def test_a_window_wider_than_the_image_is_the_image_mean() -> None:
    f = torch.randn(1, 4, 16, 12, generator=torch.Generator().manual_seed(2))
    grid = coarse_context([f], (16, 12), (400,))
    torch.testing.assert_close(grid[0, :, 0, 0], f[0].mean((1, 2)))
    torch.testing.assert_close(grid[0, :, 3, 2], f[0].mean((1, 2)))


def test_an_offset_head_adds_its_offset_stays_pointwise_and_takes_a_new_class() -> None:
    head = mr.load_model("nuclei-unet2d").head
    wrapped = offset_head(head, 2).eval()
    assert list(wrapped.state_dict()) == list(head.state_dict())  # loads the head's states
    g = torch.Generator().manual_seed(3)
    f, offset = torch.randn(1, 96, 6, 5, generator=g), torch.randn(1, 2, 6, 5, generator=g)
    torch.testing.assert_close(wrapped(f, offset), head(f) + offset)
    rows = as_row_head(wrapped)
    assert rows is not None
    flat = f.movedim(1, -1).reshape(-1, 96), offset.movedim(1, -1).reshape(-1, 2)
    torch.testing.assert_close(rows(*flat), (head(f) + offset).movedim(1, -1).reshape(-1, 2))
    resize_outputs(wrapped.get_submodule("head.2"), 3)  # a class added in the session
    out = wrapped(f, offset)
    assert out.shape[1] == 3
    torch.testing.assert_close(out[:, 2], torch.zeros(1, 6, 5))  # zero weight and bias, no offset


def test_a_slice_that_is_not_of_the_channel_axis_is_not_pointwise() -> None:
    class Shifted(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, 1:]

    class Channels(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 1:3]

    assert as_row_head(Shifted().eval()) is None
    assert as_row_head(Channels().eval()) is not None


def test_large_float16_features_are_averaged_a_few_channels_at_a_time() -> None:
    shape = (2100, 2100)  # 4.4 M pixels a channel: one channel a chunk
    f = torch.randn((1, 3, *shape), generator=torch.Generator().manual_seed(4)).half()
    grid = coarse_context([f], shape, (8,))
    whole = F.adaptive_avg_pool2d(f.float(), (525, 525))
    assert grid.dtype == torch.float32 and grid.shape == (1, 3, 525, 525)
    torch.testing.assert_close(grid[0, :, 1:-1, 1:-1], F.avg_pool2d(whole, 3, 1)[0])
