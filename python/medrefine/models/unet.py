"""Reference U-Net, one implementation for 2D and 3D.

Tensors are channel-first: ``(N, C, H, W)`` for ``spatial_dims=2`` and ``(N, C, D, H, W)`` for
``spatial_dims=3`` (spatial axes in array order: z, y, x). Every spatial size must be a multiple of
``2 ** (depth - 1)``; :class:`medrefine.models.zoo.Preprocessing` pads to that.

The network is built to be split for interactive refinement: ``forward`` concatenates the outputs
of the ``head_levels`` finest decoder levels, upsampled to full resolution, and hands that tensor to
``self.head``, a pointwise (1x1) block. Cutting at ``head`` therefore caches one multi-scale
feature tensor of ``UNetConfig.head_in_channels`` channels at full resolution, and the trainable
head can be evaluated on the feature vectors of the marked pixels alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a reference U-Net.

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: input image channels.
        num_classes: output classes (0 = background).
        base_channels: channels of the finest level; doubled per level, capped at ``max_channels``.
        depth: number of resolution levels (``depth - 1`` poolings).
        max_channels: channel cap of the coarse levels (keeps the weights small).
        head_levels: how many of the finest decoder levels feed the head (multi-scale input).
        head_hidden: hidden width of the pointwise head.
        input_scale: the encoder sees the input averaged down by this factor, ``1/k`` for an
            integer k (e.g. 0.25 for large structures in big images); the head input is resampled
            back to the input size.
    """

    spatial_dims: int = 2
    in_channels: int = 1
    num_classes: int = 2
    base_channels: int = 32
    depth: int = 4
    max_channels: int = 256
    head_levels: int = 2
    head_hidden: int = 32
    input_scale: float = 1.0

    def channels(self) -> list[int]:
        """Channels per level, finest first."""
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(self.depth)]

    @property
    def head_in_channels(self) -> int:
        """Channels of the cached feature tensor that enters the head."""
        return sum(self.channels()[: self.head_levels])

    @property
    def stride(self) -> int:
        """Spatial sizes of the input must be multiples of this."""
        return round((1 << (self.depth - 1)) / self.input_scale)


def _conv(dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _norm(dims: int) -> type[nn.InstanceNorm2d] | type[nn.InstanceNorm3d]:
    return nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, instance norm, LeakyReLU) layers."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        conv, norm = _conv(dims), _norm(dims)
        super().__init__(
            conv(cin, cout, 3, padding=1, bias=False),
            norm(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            conv(cout, cout, 3, padding=1, bias=False),
            norm(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class PointwiseHead(nn.Sequential):
    """1x1 conv, ReLU, 1x1 conv: the part medrefine fine-tunes per image."""

    def __init__(self, dims: int, cin: int, hidden: int, num_classes: int) -> None:
        conv = _conv(dims)
        super().__init__(conv(cin, hidden, 1), nn.ReLU(), conv(hidden, num_classes, 1))


class UNet(nn.Module):
    """U-Net with a multi-scale pointwise head; see the module docstring for the split point."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        dims, ch = config.spatial_dims, config.channels()
        if dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {dims}")
        self.encoders = nn.ModuleList(
            [
                ConvBlock(dims, config.in_channels if i == 0 else ch[i - 1], ch[i])
                for i in range(len(ch))
            ]
        )
        conv = _conv(dims)
        # Decoder level i (0 = finest) takes level i+1 upsampled and the encoder skip of level i.
        self.reduce = nn.ModuleList([conv(ch[i + 1], ch[i], 1) for i in range(len(ch) - 1)])
        self.decoders = nn.ModuleList(
            [ConvBlock(dims, 2 * ch[i], ch[i]) for i in range(len(ch) - 1)]
        )
        self.head = PointwiseHead(
            dims, config.head_in_channels, config.head_hidden, config.num_classes
        )
        self._mode = "bilinear" if dims == 2 else "trilinear"
        self._pool = F.max_pool2d if dims == 2 else F.max_pool3d
        self._average = F.avg_pool2d if dims == 2 else F.avg_pool3d
        self._factor = round(1 / config.input_scale)
        if abs(self._factor * config.input_scale - 1) > 1e-9:
            raise ValueError(f"input_scale must be 1/k for an integer k, got {config.input_scale}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-scale head input ``(N, head_in_channels, *spatial)`` for ``(N, C, *spatial)``."""
        size = x.shape[2:]
        if self._factor > 1:  # k-wide averaging: sizes are multiples of k (see ``stride``)
            x = self._average(x, self._factor)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self._pool(x, 2))
            skips.append(x)
        decoded = [skips[-1]]
        for i in reversed(range(len(self.decoders))):
            up = F.interpolate(decoded[0], scale_factor=2.0, mode=self._mode, align_corners=False)
            decoded.insert(0, self.decoders[i](torch.cat([self.reduce[i](up), skips[i]], dim=1)))
        levels = [
            d
            if i == 0 and self.config.input_scale == 1.0
            else F.interpolate(d, size=size, mode=self._mode, align_corners=False)
            for i, d in enumerate(decoded[: self.config.head_levels])
        ]
        return torch.cat(levels, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, *spatial)`` for an input ``(N, in_channels, *spatial)``."""
        return self.head(self.features(x))
