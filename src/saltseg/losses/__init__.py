"""Segmentation losses on logits ``(B, 1, H, W)`` and binary targets of the same shape."""

from __future__ import annotations

from collections.abc import Callable

import torch

from saltseg.losses.bce_dice import bce_dice_loss, dice_loss

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce_dice": bce_dice_loss,
    "dice": dice_loss,
}


def build_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(sorted(LOSSES))}, got {name!r}")
    return LOSSES[name]
