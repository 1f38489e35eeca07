"""The protocol every backbone runner implements."""

from __future__ import annotations

from typing import Protocol

import torch


class FeatureExtractor(Protocol):
    """Runs a frozen backbone.

    ``name`` says what runs it (e.g. ``"torch-cpu"``, ``"onnxruntime-CPUExecutionProvider"``);
    ``features`` takes ``(1, C, *spatial)`` float32 and returns the head's input tensors on the CPU.
    """

    name: str

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]: ...
