"""The Lovasz hinge (Berman et al. 2018), per image, and its "elu + 1" and symmetric variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saltseg.errors import InputError

ACTIVATIONS = ("relu", "elu")


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. errors sorted descending.

    Args:
        gt_sorted: ``(B, N)`` binary labels, ordered by decreasing error.
    Returns:
        ``(B, N)`` weights ``ΔJ(π_1..π_i) - ΔJ(π_1..π_{i-1})``.
    """
    gts = gt_sorted.sum(1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(1)
    union = gts + (1 - gt_sorted).cumsum(1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def lovasz_hinge_per_image(
    logits: torch.Tensor, target: torch.Tensor, activation: str = "relu"
) -> torch.Tensor:
    """The Lovasz hinge of every image.

    Args:
        logits: ``(B, ...)`` logits.
        target: ``(B, ...)`` binary masks.
        activation: ``relu`` (the paper's hinge) or ``elu`` (``elu(e) + 1``, a smooth hinge that
            still pushes correct pixels further from the margin).
    Returns:
        ``(B,)`` losses.
    """
    if activation not in ACTIVATIONS:
        raise InputError(
            "activation", f"expected one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    logits, labels = logits.float().flatten(1), target.float().flatten(1)
    errors = 1 - logits * (2 * labels - 1)
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    grad = lovasz_grad(labels.gather(1, perm))
    hinge = F.relu(errors_sorted) if activation == "relu" else F.elu(errors_sorted) + 1
    return (hinge * grad).sum(1)


def lovasz_hinge(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "relu",
    symmetric: bool = False,
    per_image: bool = False,
) -> torch.Tensor:
    """Mean per-image Lovasz hinge.

    Args:
        logits, target: ``(B, 1, H, W)`` logits and binary masks.
        activation: ``relu`` or ``elu`` (see :func:`lovasz_hinge_per_image`).
        symmetric: average with the loss of the flipped problem (``-logits`` vs ``1 - target``),
            which treats background as a class too (the b.e.s. variant).
        per_image: return the ``(B,)`` losses instead of their mean.
    Returns:
        A scalar, or ``(B,)`` with ``per_image``.
    """
    loss = lovasz_hinge_per_image(logits, target, activation)
    if symmetric:
        loss = (loss + lovasz_hinge_per_image(-logits, 1 - target.float(), activation)) / 2
    return loss if per_image else loss.mean()
