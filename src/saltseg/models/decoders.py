"""Decoders: turn an encoder's feature list into decoder stages, deepest first.

Every decoder returns ``list[Tensor]``, one map per block, deepest first; its ``stage_channels``
lists their channels. The model's fuse step (:class:`~saltseg.models.blocks.LastStage` or
:class:`~saltseg.models.blocks.Hypercolumn`) turns them into one map at network resolution, and
deep-supervision heads read each stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import InputError
from saltseg.models.blocks import GAU, SCSE, ConvBnRelu

UPSAMPLES = ("nearest", "bilinear", "transpose")
ATTENTIONS = ("none", "scse")


class UnetBlock(nn.Module):
    """Upsample, concatenate the skip (if any), two ``ConvBnRelu``, optional scSE.

    Args:
        in_channels, skip_channels, out_channels: channels of the deep input, the skip (0 for
            none) and the output.
        upsample: ``nearest`` or ``bilinear`` interpolation, or ``transpose`` (a transposed conv
            ``in → out`` with kernel and stride ``scale``).
        attention: ``none`` or ``scse`` after the convolutions.
        scale: the upsampling factor (1 when the skip has the input's resolution).
    Shape:
        ``x (B, in, h, w)``, ``skip (B, skip, H, W)``, ``size = (H, W)`` → ``(B, out, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        upsample: str = "nearest",
        attention: str = "none",
        scale: int = 2,
    ) -> None:
        super().__init__()
        _check("upsample", upsample, UPSAMPLES)
        _check("attention", attention, ATTENTIONS)
        self.mode = upsample
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale)
            in_channels = out_channels
        self.conv1 = ConvBnRelu(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBnRelu(out_channels, out_channels)
        self.attention = SCSE(out_channels) if attention == "scse" else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]):
        if self.mode == "transpose":
            x = self.up(x)
        if tuple(x.shape[-2:]) != tuple(size):
            mode = "nearest" if self.mode == "nearest" else "bilinear"
            align = None if mode == "nearest" else False
            x = F.interpolate(x, size=size, mode=mode, align_corners=align)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.conv2(self.conv1(x))
        return self.attention(x)


class UnetDecoder(nn.Module):
    """A U-Net decoder: one block per encoder stage, deepest first, then one to full resolution.

    The foundation's U-Net uses the defaults; b.e.s. uses ``bilinear`` + ``scse``; pad128 and
    phalanx use ``transpose`` + ``scse`` (with a hypercolumn fuse in the model).

    Args:
        encoder_channels: the encoder's ``out_channels`` (shallowest first); the last may be a
            center's output channels.
        encoder_reductions: the encoder's ``reductions`` (shallowest first).
        decoder_channels: output channels of each block, deepest first; one block per encoder
            stage, plus a last block without skip when the shallowest stage has stride > 1.
        upsample, attention: see :class:`UnetBlock`.
    Shape:
        features (shallowest first) → stages, deepest first; the last is ``(B,
        decoder_channels[-1], H, W)`` at input resolution.
    """

    def __init__(
        self,
        encoder_channels: list[int],
        encoder_reductions: list[int],
        decoder_channels: list[int],
        upsample: str = "nearest",
        attention: str = "none",
    ) -> None:
        super().__init__()
        skips = list(encoder_channels[::-1][1:])
        self.reductions = list(encoder_reductions[::-1][1:])
        if encoder_reductions[0] > 1:
            skips.append(0)
            self.reductions.append(1)
        _check_count(decoder_channels, len(skips))
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        deeper = [encoder_reductions[-1], *self.reductions]
        scales = [a // b for a, b in zip(deeper, self.reductions)]
        self.blocks = nn.ModuleList(
            UnetBlock(i, s, o, upsample, attention, scale)
            for i, s, o, scale in zip(ins, skips, decoder_channels, scales)
        )
        self.stage_channels = list(decoder_channels)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        x, skips = features[-1], features[::-1][1:]
        stages = []
        for k, (block, reduction) in enumerate(zip(self.blocks, self.reductions)):
            skip = skips[k] if k < len(skips) else None
            x = block(x, skip, (size[0] // reduction, size[1] // reduction))
            stages.append(x)
        return stages


class GauDecoder(nn.Module):
    """A decoder of :class:`~saltseg.models.blocks.GAU` blocks, one per skip (the resize128 recipe).

    Args:
        encoder_channels: the encoder's ``out_channels`` (shallowest first); the last may be a
            center's output channels.
        decoder_channels: output channels of each GAU block, deepest first; one per skip
            (``len(encoder_channels) - 1``).
        kernel_size: the GCN ``k`` of every block.
    Shape:
        features (shallowest first) → stages, deepest first, each at its skip's resolution.
    """

    def __init__(
        self, encoder_channels: list[int], decoder_channels: list[int], kernel_size: int = 7
    ) -> None:
        super().__init__()
        skips = list(encoder_channels[::-1][1:])
        _check_count(decoder_channels, len(skips))
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            GAU(i, s, o, kernel_size) for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.stage_channels = list(decoder_channels)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        x, stages = features[-1], []
        for block, skip in zip(self.blocks, features[::-1][1:]):
            x = block(x, skip)
            stages.append(x)
        return stages


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name}", f"expected one of {', '.join(choices)}, got {value!r}")


def _check_count(decoder_channels: list[int], expected: int) -> None:
    if len(decoder_channels) != expected:
        raise InputError(
            "decoder_channels",
            f"expected {expected} values for this encoder, got {len(decoder_channels)}",
        )
