"""The segmentation model as a composition, and the factory that builds one from config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from saltseg.models.decoders import UnetDecoder
from saltseg.models.encoders import TimmEncoder
from saltseg.models.geometry import Geometry
from saltseg.models.heads import SegmentationHead


class SegmentationModel(nn.Module):
    """``geometry → encoder → decoder → head → geometry⁻¹``.

    Shape:
        ``(B, in_channels, tile, tile)`` float → ``(B, 1, tile, tile)`` logits.
    """

    def __init__(
        self, geometry: Geometry, encoder: nn.Module, decoder: nn.Module, head: nn.Module
    ) -> None:
        super().__init__()
        self.geometry, self.encoder, self.decoder, self.head = geometry, encoder, decoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.geometry.to_network(x)
        features = self.encoder(x)
        y = self.head(self.decoder(features, x.shape[-2:]))
        return self.geometry.to_tile(y)


def unet(
    *,
    tile: int,
    encoder_name: str = "resnet18",
    pretrained: str = "none",
    in_channels: int = 1,
    decoder_channels: list[int] | None = None,
    resize_to: int | None = None,
    pad_to: int = 128,
) -> SegmentationModel:
    """A U-Net on a timm encoder (the foundation's first model)."""
    encoder = TimmEncoder(encoder_name, in_channels, pretrained)
    geometry = Geometry(tile, resize_to or tile, pad_to, encoder.output_stride)
    decoder = UnetDecoder(
        encoder.out_channels, encoder.reductions, decoder_channels or [256, 128, 64, 32, 16]
    )
    return SegmentationModel(geometry, encoder, decoder, SegmentationHead(decoder.out_channels))


ARCHITECTURES: dict[str, Callable[..., SegmentationModel]] = {"unet": unet}


def build_model(arch: str, tile: int, **kwargs: Any) -> SegmentationModel:
    """Build ``ARCHITECTURES[arch]`` for ``tile``-sized inputs from config keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {', '.join(sorted(ARCHITECTURES))}, got {arch!r}")
    return ARCHITECTURES[arch](tile=tile, **kwargs)
