"""Encoders: timm backbones in ``features_only`` mode.

Contract (every encoder here keeps it, and the tests check it):
- ``forward(x)`` takes ``(B, in_channels, H, W)`` with H, W multiples of ``output_stride`` and
  returns a list of feature maps, shallowest first;
- ``out_channels[i]`` and ``reductions[i]`` give the channels and the stride (H / h) of map ``i``;
- ``output_stride`` is the largest reduction;
- ``in_channels`` other than 3 are handled by timm (pretrained first-conv weights are summed or
  repeated), so 1-channel seismic tiles use ImageNet weights as they are.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from saltseg.errors import InputError

PRETRAINED_CHOICES = "'none', 'imagenet' or a path to a local weights file"


class TimmEncoder(nn.Module):
    """A timm backbone returning its multi-scale features.

    Args:
        encoder_name: any timm model name with ``features_only`` support (e.g. ``resnet34``).
        in_channels: input channels (1 for seismic tiles).
        pretrained: ``none``, ``imagenet`` (timm/Hugging Face cache or download) or a local path.
        depth: how many feature stages to use (5 for a U-Net down to stride 32).
    """

    def __init__(
        self, encoder_name: str, in_channels: int = 1, pretrained: str = "none", depth: int = 5
    ) -> None:
        super().__init__()
        if encoder_name not in timm.list_models():
            raise ValueError(f"encoder_name: unknown timm model {encoder_name!r}")
        kwargs = {
            "features_only": True,
            "in_chans": in_channels,
            "out_indices": tuple(range(depth)),
        }
        self.model = _create(encoder_name, pretrained, kwargs)
        self.out_channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        self.output_stride = max(self.reductions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


def _create(name: str, pretrained: str, kwargs: dict) -> nn.Module:
    if pretrained == "none":
        return timm.create_model(name, pretrained=False, **kwargs)
    if pretrained == "imagenet":
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # network, cache and hub errors all mean the same to a user
            raise InputError(
                "pretrained",
                f"could not load ImageNet weights for {name} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160] if str(err) else ''}); put them in the Hugging "
                "Face cache, give a local weights path, or set pretrained: none",
            ) from None
    path = Path(pretrained)
    if not path.is_file():
        raise InputError("pretrained", f"expected {PRETRAINED_CHOICES}, got {pretrained!r}")
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
    )
