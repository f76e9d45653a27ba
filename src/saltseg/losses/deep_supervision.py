"""Deep supervision: a loss on every side output, and the resize128 recipe's loss built on it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from saltseg.errors import InputError
from saltseg.losses.empty import empty_loss
from saltseg.losses.lovasz import lovasz_hinge

#: weights of the classification BCE, of each side output's Lovasz and of the fused Lovasz
WEIGHTS = {"empty": 0.05, "side": 0.1, "fused": 1.0}


def deep_supervision_loss(
    output: dict | torch.Tensor,
    target: torch.Tensor,
    activation: str = "relu",
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """``0.05·BCE(empty) + 0.1·Σ_side Lovasz(side | non-empty tiles) + 1.0·Lovasz(fused)``.

    Args:
        output: a deep-supervised model's training output ``{"logits", "side", "empty_logit"}``
            (``empty_logit > 0`` predicts an empty tile); a plain logits tensor (eval mode, e.g.
            validation) gets the fused term only.
        target: ``(B, 1, H, W)`` binary masks.
        activation: the Lovasz hinge's ``relu`` or ``elu``.
        weights: ``{"empty", "side", "fused"}`` weights (defaults :data:`WEIGHTS`); the side
            weight applies to each side output.
    Returns:
        A scalar. Side outputs are scored on non-empty tiles only (0 when none is).
    """
    w = {**WEIGHTS, **(weights or {})}
    if isinstance(output, torch.Tensor):
        return w["fused"] * lovasz_hinge(output, target, activation)
    empty = empty_loss(output["empty_logit"], target)
    side = side_loss(partial(lovasz_hinge, activation=activation), output["side"], target)
    fused = lovasz_hinge(output["logits"], target, activation)
    return w["empty"] * empty + w["side"] * side + w["fused"] * fused


def side_loss(
    loss: Callable[..., torch.Tensor],
    side: list[torch.Tensor],
    target: torch.Tensor,
) -> torch.Tensor:
    """``Σ_side loss(side | non-empty tiles)``: 0 when every tile is empty.

    ``loss`` takes ``per_image=True`` (the ``(B,)`` losses): each side output is scored on every
    tile and the non-empty tiles' losses averaged, which equals the loss of the non-empty subset
    without selecting it, so the step keeps fixed shapes and never waits on the device (CUDA
    graphs capture it).
    """
    non_empty = (target.float().flatten(1).amax(1) > 0).float()
    count = non_empty.sum().clamp(min=1)
    total = side[0].new_zeros((), dtype=torch.float32)
    for logits in side:
        total = total + (loss(logits, target, per_image=True) * non_empty).sum() / count
    return total


def with_side_outputs(
    loss: Callable[[torch.Tensor | dict, torch.Tensor], torch.Tensor], weight: float
) -> Callable[[torch.Tensor | dict, torch.Tensor], torch.Tensor]:
    """``loss + weight * side_loss(loss)`` on a deep-supervised training output.

    Any phase loss can supervise the side outputs this way (phase key ``side_weight``); on a
    plain logits tensor (eval mode: validation) only ``loss`` applies.
    """

    def combined(output: torch.Tensor | dict, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict):
            return loss(output, target)
        if "side" not in output:
            raise InputError(
                "side_weight", "the model has no side outputs (set model.deep_supervision)"
            )
        return loss(output, target) + weight * side_loss(loss, output["side"], target)

    return combined
