"""Heads and features shared by the crop-mode tests (``test_head_crop``, ``test_crop_eval``,
``test_crop_stages``)."""

from __future__ import annotations

import torch
from torch import nn

from medrefine.engine.head.runner import channels_last

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
UP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class Decoder(nn.Module):
    """Transposed conv -> conv -> transposed conv from features at 1/4 resolution."""

    def __init__(self, dims: int, output_padding: int = 0, kernel: int = 2) -> None:
        super().__init__()
        pad = 1 if kernel == 3 else 0
        self.up1 = UP[dims](6, 5, kernel, 2, padding=pad, output_padding=output_padding)
        self.conv = CONV[dims](5, 5, 3, padding=1)
        self.up2 = UP[dims](5, 3, kernel, 2, padding=pad, output_padding=output_padding)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.up2(torch.relu(self.conv(torch.relu(self.up1(f)))))


def make_features(
    shape: tuple[int, ...], *fractions: int, channels: int = 6
) -> tuple[torch.Tensor, ...]:
    """Seeded random features, channels-last: the first of ``channels`` channels at
    ``1 / fractions[0]`` of ``shape``, further ones of 4 (at 1/2) or 2 channels."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, k in enumerate(fractions):
        c = channels if i == 0 else 4 if k == 2 else 2
        size = tuple(-(-s // k) for s in shape)
        out.append(channels_last(torch.randn((1, c, *size), generator=gen)))
    return tuple(out)
