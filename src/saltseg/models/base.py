"""The segmentation model as a composition of parts."""

from __future__ import annotations

import torch
from torch import nn

from saltseg.errors import InputError
from saltseg.models.blocks import LastStage
from saltseg.models.centers import NoCenter
from saltseg.models.geometry import Geometry


class SegmentationModel(nn.Module):
    """``inputs → geometry → encoder → center → decoder → fuse → head → geometry⁻¹``
    (+ deep supervision).

    Args:
        geometry: brings tiles to the network size and logits back (:class:`Geometry`).
        encoder: returns feature maps, shallowest first (see ``encoders``).
        decoder: maps features (the deepest replaced by the center's output) to stages.
        head: maps the fused map to logits.
        center: applied to the deepest feature map; none by default.
        fuse: stages → one map at network resolution; the last stage by default.
        deep_supervision: side outputs and empty/non-empty logit
            (:class:`~saltseg.models.heads.DeepSupervision`), used in training mode only.
        classifier: an empty-tile head on the center's map
            (:class:`~saltseg.models.heads.ClassificationHead`), used in training mode only.
        inputs: channels computed from the tile and appended to it
            (:class:`~saltseg.models.inputs.InputChannels`); the tile alone by default.
    Returns:
        In eval mode, or without deep supervision and classifier: the logits tensor. In training
        mode with a classifier: ``{"logits", "empty_logit": (B, 1)}``; with deep supervision:
        ``{"logits": (B, 1, tile, tile), "side": [(B, 1, tile, tile), ...],
        "empty_logit": (B, 1)}``.
    Shape:
        ``(B, in_channels, tile, tile)`` float → ``(B, 1, tile, tile)`` logits.
    """

    def __init__(
        self,
        geometry: Geometry,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        center: nn.Module | None = None,
        fuse: nn.Module | None = None,
        deep_supervision: nn.Module | None = None,
        classifier: nn.Module | None = None,
        inputs: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.inputs = inputs if inputs is not None else nn.Identity()
        self.geometry, self.encoder, self.decoder, self.head = geometry, encoder, decoder, head
        self.center = center if center is not None else NoCenter(encoder.out_channels[-1])
        self.fuse = fuse if fuse is not None else LastStage(decoder.stage_channels)
        if deep_supervision is not None and classifier is not None:
            raise InputError("model", "deep_supervision has its own empty head; drop empty_head")
        self.deep_supervision, self.classifier = deep_supervision, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict:
        x = self.geometry.to_network(self.inputs(x))
        size = (x.shape[-2], x.shape[-1])
        features = self.encoder(x)
        center = self.center(features[-1])
        stages = self.decoder([*features[:-1], center], size)
        logits = self.geometry.to_tile(self.head(self.fuse(stages, size)))
        if not self.training:
            return logits
        if self.classifier is not None:
            return {"logits": logits, "empty_logit": self.classifier(center)}
        if self.deep_supervision is None:
            return logits
        side, empty_logit = self.deep_supervision(stages, center, size)
        side = [self.geometry.to_tile(s) for s in side]
        return {"logits": logits, "side": side, "empty_logit": empty_logit}
