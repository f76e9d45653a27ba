"""Heads: map decoder features (or the center's map) to outputs."""

from __future__ import annotations

import torch
from torch import nn

from saltseg.models.blocks import resize


class SegmentationHead(nn.Conv2d):
    """A 1x1 convolution from decoder features to ``classes`` logit maps."""

    def __init__(self, in_channels: int, classes: int = 1) -> None:
        super().__init__(in_channels, classes, kernel_size=1)


class ClassificationHead(nn.Sequential):
    """Empty/non-empty tile logit: ``global average pool → dropout → linear``.

    Args:
        in_channels: channels of the map it reads (the center's output).
        dropout: dropout before the linear layer.
    Shape:
        ``(B, in_channels, h, w) → (B, 1)``.
    """

    def __init__(self, in_channels: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, 1)
        )


class DeepSupervision(nn.Module):
    """Side outputs (a 1x1 conv per decoder stage, resized) and the empty/non-empty logit.

    Args:
        stage_channels: channels of each decoder stage (deepest first).
        center_channels: channels of the center's output (read by the classifier).
    Shape:
        ``stages, center, size`` → ``([(B, 1, *size)] * len(stages), (B, 1))``.
    """

    def __init__(self, stage_channels: list[int], center_channels: int) -> None:
        super().__init__()
        self.side = nn.ModuleList(SegmentationHead(c) for c in stage_channels)
        self.classifier = ClassificationHead(center_channels)

    def forward(
        self, stages: list[torch.Tensor], center: torch.Tensor, size: tuple[int, int]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        side = [resize(head(s), size) for head, s in zip(self.side, stages)]
        return side, self.classifier(center)
