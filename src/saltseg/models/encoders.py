"""Encoders: timm backbones in ``features_only`` mode, with optional stem surgery.

Contract (every encoder here keeps it, and the tests check it):
- ``forward(x)`` takes ``(B, in_channels, H, W)`` with H, W multiples of ``output_stride`` and
  returns a list of feature maps, shallowest first;
- ``out_channels[i]`` and ``reductions[i]`` give the channels and the stride (H / h) of map ``i``;
  after stem surgery several maps may share a reduction (a stride-1 ResNet gives ``[1, 1, 2, 4,
  8]``), and ``model.feature_info`` reports the same reductions;
- ``output_stride`` is the largest reduction;
- ``in_channels`` other than 3 are handled by timm (pretrained first-conv weights are summed or
  repeated), so 1-channel seismic tiles use ImageNet weights as they are;
- pretrained weights are loaded before any surgery, so every layer the surgery keeps keeps them.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from saltseg.errors import InputError
from saltseg.models.weights import create_timm

STEMS = ("default", "stride1")


class TimmEncoder(nn.Module):
    """A timm backbone returning its multi-scale features.

    Args:
        encoder_name: any timm model name with ``features_only`` support (e.g. ``resnet34``).
        in_channels: input channels (1 for seismic tiles).
        pretrained: ``none``, ``imagenet`` (timm/Hugging Face cache or download) or a local path.
        depth: how many feature stages to use (5 for a U-Net down to stride 32).
        stem: ``default`` keeps timm's stem; ``stride1`` applies :func:`stride1_stem` (first
            convolution at stride 1 with a 3x3 kernel, first max-pool removed), dividing every
            reduction by 4 so a 128 input keeps its resolution in the first stages.
        encoder_args: extra keyword arguments of the timm model, e.g. ``{channels: [32, 64, 128,
            256], stem_width: 16}`` for a ResNet at half width (pretrained weights then no longer
            fit, so use it with ``pretrained: none``).
    Shape:
        ``(B, in_channels, H, W)`` → ``[(B, out_channels[i], H / reductions[i], W / ...)]``.
    """

    def __init__(
        self,
        encoder_name: str,
        in_channels: int = 1,
        pretrained: str = "none",
        depth: int = 5,
        stem: str = "default",
        encoder_args: dict | None = None,
    ) -> None:
        super().__init__()
        if encoder_name not in timm.list_models():
            raise InputError("encoder_name", f"unknown timm model {encoder_name!r}")
        if stem not in STEMS:
            raise InputError("stem", f"expected one of {', '.join(STEMS)}, got {stem!r}")
        kwargs = {
            "features_only": True,
            "in_chans": in_channels,
            "out_indices": tuple(range(depth)),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in (encoder_args or {}).items()},
        }
        self.name, self.in_channels = encoder_name, in_channels
        self.model = create_timm(encoder_name, pretrained, kwargs)
        if stem == "stride1":
            stride1_stem(self.model, encoder_name)
        self.out_channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        self.output_stride = max(self.reductions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


def stride1_stem(model: nn.Module, name: str = "encoder") -> None:
    """Turn a ResNet-style stem into a full-resolution one, in place.

    The first convolution (``7x7`` stride 2, or the first ``3x3`` stride 2 of a deep stem)
    becomes a ``3x3`` stride-1 convolution initialised from the centre of the old kernel, and the
    first max-pool becomes an identity. Both are found by module order and timm's
    ``feature_info``, not by name: the convolution is the model's first, and the max-pool must be
    a top-level module after it and before the second feature map (the stem of every timm
    ResNet, ResNeXt, SE-ResNet and deep-stem ``resnet*t``/``*d`` variant). ``feature_info``
    reductions are divided accordingly (by 2, and by 4 after the max-pool).

    Args:
        model: a timm ``features_only`` model.
        name: the encoder's name, for error messages.
    Raises:
        ValueError: when the model has no such stem (e.g. EfficientNet, RegNet, MobileNet).
    """
    info = model.feature_info
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    feature_at = [order.get(_module_key(model, m), len(order)) for m in info.module_name()]
    conv_name, conv = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None)
    )
    stem_end = feature_at[1] if len(feature_at) > 1 else len(order)
    pools = [
        n
        for n, m in model.named_children()
        if isinstance(m, nn.MaxPool2d) and order[conv_name or ""] < order[n] < stem_end
    ]
    pool_name = pools[0] if pools else None
    if pool_name is None:
        raise InputError(
            "stem",
            f"'stride1' needs a max-pool after the stem (ResNet family); {name} has none "
            "(use a ResNet-family encoder or stem: default)",
        )
    if _pair(conv.stride) != (2, 2):
        raise InputError(
            "stem",
            f"'stride1' needs a stride-2 first convolution; {name}'s has stride "
            f"{conv.stride} (use a ResNet-family encoder or stem: default)",
        )
    _set_module(model, conv_name, _stride1_conv(conv))
    _set_module(model, pool_name, nn.Identity())
    for entry, at in zip(info.info, feature_at):
        entry["reduction"] //= 4 if at > order[pool_name] else 2


def _stride1_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A stride-1 conv with a kernel of at most 3x3, weights cropped from the centre of ``conv``."""
    k = min(_pair(conv.kernel_size)[0], 3)
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        k,
        stride=1,
        padding=k // 2,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        kh, kw = conv.weight.shape[-2:]
        top, left = (kh - k) // 2, (kw - k) // 2
        new.weight.copy_(conv.weight[..., top : top + k, left : left + k])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _module_key(model: nn.Module, name: str) -> str:
    """A ``feature_info`` name (``layer1``, ``blocks.0``) as a ``named_modules`` key."""
    modules = dict(model.named_modules())
    return name if name in modules else name.replace(".", "_")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
