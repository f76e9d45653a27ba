"""Binary cross-entropy plus soft Dice, the b.e.s. first-phase loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0, per_image: bool = False
) -> torch.Tensor:
    """``1 - soft Dice`` per image, averaged (``per_image``: the ``(B,)`` losses); ``eps``
    smooths empty masks towards 0 loss."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (prob * target).sum(1)
    dice = (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)
    return 1 - dice if per_image else (1 - dice).mean()


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, per_image: bool = False
) -> torch.Tensor:
    """Mean pixel BCE (on logits) plus :func:`dice_loss` (``per_image``: each image's)."""
    if not per_image:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return bce + dice_loss(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return bce.flatten(1).mean(1) + dice_loss(logits, target, per_image=True)
