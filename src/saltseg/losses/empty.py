"""The empty-tile head's loss: BCE of the tile-level logit against "the mask is empty"."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from saltseg.errors import InputError


def empty_target(target: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` masks → ``(B,)`` floats: 1 where the tile holds no salt pixel."""
    return (target.flatten(1).amax(1) <= 0).float()


def empty_loss(empty_logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE of ``(B, 1)`` empty logits (``> 0`` predicts an empty tile) vs the masks."""
    return F.binary_cross_entropy_with_logits(empty_logit.float().flatten(), empty_target(target))


def with_empty_head(
    loss: Callable[[torch.Tensor | dict, torch.Tensor], torch.Tensor], weight: float
) -> Callable[[torch.Tensor | dict, torch.Tensor], torch.Tensor]:
    """``loss + weight * empty_loss`` on a training output dict with ``empty_logit``.

    On a plain logits tensor (eval mode: validation) only ``loss`` applies.
    """

    def combined(output: torch.Tensor | dict, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict):
            return loss(output, target)
        if "empty_logit" not in output:
            raise InputError("empty_weight", "the model has no empty head (set model.empty_head)")
        return loss(output, target) + weight * empty_loss(output["empty_logit"], target)

    return combined
