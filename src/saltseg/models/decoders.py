"""Decoders: turn an encoder's feature list into one full-resolution feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.models.blocks import ConvBnRelu


class UnetBlock(nn.Module):
    """Upsample x2, concatenate the skip (if any), then two ``ConvBnRelu``."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBnRelu(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBnRelu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]):
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    """A U-Net decoder: one block per encoder stage, deepest first, then one to full resolution.

    Args:
        encoder_channels: the encoder's ``out_channels`` (shallowest first).
        encoder_reductions: the encoder's ``reductions`` (shallowest first).
        decoder_channels: output channels of each block, deepest first; one block per encoder
            stage, plus a last block without skip when the shallowest stage has stride > 1.
    Shape:
        features (shallowest first) → ``(B, decoder_channels[-1], H, W)`` at input resolution.
    """

    def __init__(
        self,
        encoder_channels: list[int],
        encoder_reductions: list[int],
        decoder_channels: list[int],
    ) -> None:
        super().__init__()
        skips = list(encoder_channels[::-1][1:])
        self.reductions = list(encoder_reductions[::-1][1:])
        if encoder_reductions[0] > 1:
            skips.append(0)
            self.reductions.append(1)
        if len(decoder_channels) != len(skips):
            raise ValueError(
                f"decoder_channels: expected {len(skips)} values for this encoder, "
                f"got {len(decoder_channels)}"
            )
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            UnetBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x, skips = features[-1], features[::-1][1:]
        for k, (block, reduction) in enumerate(zip(self.blocks, self.reductions)):
            skip = skips[k] if k < len(skips) else None
            out_size = (size[0] // reduction, size[1] // reduction)
            x = block(x, skip, out_size)
        return x
