"""The deep-supervision loss of the resize128 recipe: classifier, side outputs and fused output."""

from __future__ import annotations

import torch

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
    target = target.float()
    non_empty = target.flatten(1).amax(1) > 0
    empty = empty_loss(output["empty_logit"], target)
    side = output["logits"].new_zeros((), dtype=torch.float32)
    if non_empty.any():
        for logits in output["side"]:
            side = side + lovasz_hinge(logits[non_empty], target[non_empty], activation)
    fused = lovasz_hinge(output["logits"], target, activation)
    return w["empty"] * empty + w["side"] * side + w["fused"] * fused
