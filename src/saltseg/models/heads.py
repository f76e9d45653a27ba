"""Heads: map decoder features to outputs."""

from __future__ import annotations

from torch import nn


class SegmentationHead(nn.Conv2d):
    """A 1x1 convolution from decoder features to ``classes`` logit maps."""

    def __init__(self, in_channels: int, classes: int = 1) -> None:
        super().__init__(in_channels, classes, kernel_size=1)
