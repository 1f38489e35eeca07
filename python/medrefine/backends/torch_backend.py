"""Backbone in PyTorch (always available; the reference for the exported backends)."""

from __future__ import annotations

import torch
from torch import nn


class TorchBackend:
    """Runs a backbone module without autograd on ``device``."""

    def __init__(self, backbone: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.name = f"torch-{self.device.type}"

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Feature tuple for input ``(1, C, *spatial)``, returned on the CPU."""
        with torch.no_grad():  # not inference_mode: the head later takes these in autograd
            out = self.backbone(x.to(self.device))
        return tuple(t.to("cpu") for t in out)
