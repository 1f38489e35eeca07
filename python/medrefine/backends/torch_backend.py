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

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Feature tuple for input ``(1, C, *spatial)``, left on ``device`` (a session whose
        features live there takes them without a round trip through the host)."""
        with torch.no_grad():  # not inference_mode: the head later takes these in autograd
            return tuple(self.backbone(x.to(self.device)))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Feature tuple for input ``(1, C, *spatial)``, returned on the CPU."""
        return tuple(t.to("cpu") for t in self.run(x))
