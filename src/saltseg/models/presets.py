"""The architectures as compositions: one builder, :func:`assemble`, and a default set per preset.

Every preset accepts every keyword of :func:`assemble`, so a config can swap any part (a smaller
``encoder_name`` for CPU profiles and tests, other ``decoder_channels``, ``pretrained``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from saltseg.errors import InputError
from saltseg.models.base import SegmentationModel
from saltseg.models.blocks import Hypercolumn, LastStage
from saltseg.models.centers import build_center
from saltseg.models.decoders import GauDecoder, UnetDecoder
from saltseg.models.encoders import TimmEncoder
from saltseg.models.geometry import Geometry
from saltseg.models.heads import ClassificationHead, DeepSupervision, SegmentationHead
from saltseg.models.inputs import InputChannels

DECODERS = ("unet", "gau")


def assemble(
    *,
    tile: int,
    encoder_name: str,
    decoder_channels: list[int],
    pretrained: str = "none",
    in_channels: int = 1,
    input_features: list[str] | None = None,
    stem: str = "default",
    encoder_args: dict[str, Any] | None = None,
    resize_to: int | None = None,
    pad_to: int | None = None,
    center: str = "none",
    center_channels: int = 256,
    decoder: str = "unet",
    upsample: str = "nearest",
    attention: str = "none",
    gcn_kernel: int = 7,
    hypercolumn: bool = False,
    hypercolumn_channels: int = 64,
    deep_supervision: bool = False,
    empty_head: bool = False,
    context: dict[str, int] | None = None,
) -> SegmentationModel:
    """Build a model from its parts.

    Args:
        tile: side of the input tiles (101).
        encoder_name: a timm model with ``features_only`` (``resnet34``, ``resnext50_32x4d``).
        decoder_channels: output channels of each decoder block, deepest first.
        pretrained: ``none``, ``imagenet`` or a local weights file.
        in_channels: input channels (1 for seismic tiles).
        input_features: channels computed from a 1-channel tile and appended to it
            (:mod:`saltseg.models.inputs`: ``cumsum``, ``depth``); none by default.
        stem: ``default`` or ``stride1`` (3x3 stride-1 first conv, no first max-pool).
        encoder_args: extra keyword arguments of the timm encoder (``channels``, ``stem_width``).
        resize_to: side after bilinear resizing; ``None`` keeps ``tile``.
        pad_to: side after reflect padding (a multiple of the encoder stride); ``None`` keeps
            ``resize_to``.
        center: ``none``, ``fpa`` (Feature Pyramid Attention) or ``gcn`` (conv3x3 + GCN).
        center_channels: the center's output channels (unused for ``none``).
        decoder: ``unet`` (upsample, concat skip, 2 conv3x3+BN, optional scSE) or ``gau``
            (Global Attention Upsample blocks).
        upsample: ``nearest``, ``bilinear`` or ``transpose`` (``unet`` decoder only).
        attention: ``none`` or ``scse`` after each ``unet`` decoder block.
        gcn_kernel: ``k`` of every GCN (``gcn`` center, ``gau`` decoder).
        hypercolumn: fuse all decoder stages (upsample, concat, 1x1 conv) instead of the last.
        hypercolumn_channels: channels of the hypercolumn's 1x1 mixing conv.
        deep_supervision: add side outputs and an empty/non-empty classifier (training mode;
            trained by the ``deep_supervision`` loss, or by any loss with the phase's
            ``side_weight`` and ``empty_weight``).
        empty_head: add only the empty/non-empty classifier on the center (training mode; an
            auxiliary task weighted by the phase's ``empty_weight``).
        context: ``{margin: m}``: the input is the tile with ``m`` px of its mosaic neighbours
            on each side (:mod:`saltseg.mosaic.context`); the output is the tile.
    Returns:
        A :class:`SegmentationModel` mapping ``(B, in_channels, tile, tile)`` to tile logits.
    """
    if decoder not in DECODERS:
        raise InputError("decoder", f"expected one of {', '.join(DECODERS)}, got {decoder!r}")
    inputs = InputChannels(input_features) if input_features else None
    if inputs is not None and in_channels != 1:
        raise InputError("input_features", f"expected in_channels 1, got {in_channels}")
    encoder = TimmEncoder(
        encoder_name,
        inputs.out_channels if inputs is not None else in_channels,
        pretrained,
        stem=stem,
        encoder_args=encoder_args,
    )
    resize_to = resize_to or tile
    margin = (context or {}).get("margin", 0)
    geometry = Geometry(tile, resize_to, pad_to, encoder.output_stride, margin)
    mid = build_center(center, encoder.out_channels[-1], center_channels, gcn_kernel)
    channels = [*encoder.out_channels[:-1], mid.out_channels]
    if decoder == "gau":
        dec = GauDecoder(channels, decoder_channels, gcn_kernel)
    else:
        dec = UnetDecoder(channels, encoder.reductions, decoder_channels, upsample, attention)
    if hypercolumn:
        fuse = Hypercolumn(dec.stage_channels, hypercolumn_channels)
    else:
        fuse = LastStage(dec.stage_channels)
    side = DeepSupervision(dec.stage_channels, mid.out_channels) if deep_supervision else None
    head = SegmentationHead(fuse.out_channels)
    classifier = ClassificationHead(mid.out_channels) if empty_head else None
    return SegmentationModel(geometry, encoder, dec, head, mid, fuse, side, classifier, inputs)


PRESETS: dict[str, dict[str, Any]] = {
    # the foundation's U-Net: nearest upsampling, no attention, reflect-pad 101 -> 128
    "unet": {
        "encoder_name": "resnet18",
        "decoder_channels": [256, 128, 64, 32, 16],
        "pad_to": 128,
    },
    # Decoder and hypercolumn widths below are chosen so that, scSE and all, each preset trains and
    # predicts faster than a plain smp Unet with the same encoder, stem and input geometry
    # (bench/presets.py): the extra blocks are paid for by narrower high-resolution stages.
    # b.e.s.: ResNeXt50, decoder blocks upsample + conv3x3+BN + scSE; 101 -> resize 192 -> pad 224
    "bes_resnext50": {
        "encoder_name": "resnext50_32x4d",
        "decoder_channels": [128, 64, 64, 32, 16],
        "resize_to": 192,
        "pad_to": 224,
        "upsample": "bilinear",
        "attention": "scse",
    },
    # phalanx: ResNet34, transposed conv + scSE + hypercolumn; 101 -> resize 202 -> pad 256
    "phalanx_resnet34": {
        "encoder_name": "resnet34",
        "decoder_channels": [128, 64, 32, 32, 16],
        "resize_to": 202,
        "pad_to": 256,
        "upsample": "transpose",
        "attention": "scse",
        "hypercolumn": True,
        "hypercolumn_channels": 16,
    },
    # ResNet34 + scSE, stride-1 stem, FPA center, transposed conv + scSE + hypercolumn; pad 128
    "pad128": {
        "encoder_name": "resnet34",
        "decoder_channels": [64, 64, 32, 32],
        "stem": "stride1",
        "pad_to": 128,
        "center": "fpa",
        "upsample": "transpose",
        "attention": "scse",
        "hypercolumn": True,
        "hypercolumn_channels": 32,
    },
    # stride-1 stem, conv3x3+GCN center, GAU decoder, hypercolumn, deep supervision; resize 128
    "resize128": {
        "encoder_name": "resnet34",
        "decoder_channels": [64, 64, 32, 32],
        "stem": "stride1",
        "resize_to": 128,
        "center": "gcn",
        "decoder": "gau",
        "hypercolumn": True,
        "hypercolumn_channels": 32,
        "deep_supervision": True,
    },
}

KEYWORDS = tuple(inspect.signature(assemble).parameters)


def preset(name: str) -> Callable[..., SegmentationModel]:
    """The builder of preset ``name``: :func:`assemble` with its defaults, overridable by keyword.

    An unknown keyword raises ``ValueError`` listing the valid ones.
    """
    defaults = PRESETS[name]

    @functools.wraps(assemble)
    def build(*, tile: int, **kwargs: Any) -> SegmentationModel:
        unknown = sorted(set(kwargs) - set(KEYWORDS))
        if unknown:
            raise InputError(
                "model",
                f"unknown keyword(s) {', '.join(unknown)} for {name}; expected names from "
                f"{', '.join(k for k in KEYWORDS if k != 'tile')}",
            )
        return assemble(tile=tile, **{**defaults, **kwargs})

    build.__name__ = build.__qualname__ = name
    return build
