"""Segmentation losses on logits ``(B, 1, H, W)`` and binary targets of the same shape.

Every loss in :data:`LOSSES` takes ``(output, target)`` where ``output`` is a logits tensor or a
model's training dict (``{"logits", "side", "empty_logit"}`` with deep supervision,
``{"logits", "empty_logit"}`` with an empty head); losses other than ``deep_supervision*`` read
its ``"logits"``. The losses on logits also take ``per_image=True`` for the ``(B,)`` losses of
the images (side outputs weigh them by tile, :func:`~saltseg.losses.deep_supervision.side_loss`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from saltseg.errors import InputError
from saltseg.losses.bce_dice import bce_dice_loss, dice_loss
from saltseg.losses.deep_supervision import deep_supervision_loss, with_side_outputs
from saltseg.losses.empty import with_empty_head
from saltseg.losses.lovasz import lovasz_hinge

Loss = Callable[[torch.Tensor | dict, torch.Tensor], torch.Tensor]


def _on_logits(loss: Callable[..., torch.Tensor], **options) -> Loss:
    """``loss`` applied to ``output["logits"]`` when a model hands it a dict."""

    @functools.wraps(loss)
    def wrapped(output: torch.Tensor | dict, target: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = output["logits"] if isinstance(output, dict) else output
        return loss(logits, target, **options, **kwargs)

    return wrapped


LOSSES: dict[str, Loss] = {
    "bce_dice": _on_logits(bce_dice_loss),
    "dice": _on_logits(dice_loss),
    "lovasz": _on_logits(lovasz_hinge),
    "lovasz_elu": _on_logits(lovasz_hinge, activation="elu"),
    "lovasz_symmetric": _on_logits(lovasz_hinge, symmetric=True),
    "deep_supervision": deep_supervision_loss,
    "deep_supervision_elu": functools.partial(deep_supervision_loss, activation="elu"),
}


def build_loss(name: str, empty_weight: float = 0.0, side_weight: float = 0.0) -> Loss:
    """The loss called ``name``, plus ``side_weight`` times the same loss on each side output
    (deep supervision) and ``empty_weight`` times the empty-head BCE, each when positive.

    An unknown name lists the valid ones.
    """
    if name not in LOSSES:
        raise InputError("loss", f"expected one of {', '.join(sorted(LOSSES))}, got {name!r}")
    loss = LOSSES[name]
    for key, weight, wrap in [
        ("side_weight", side_weight, with_side_outputs),
        ("empty_weight", empty_weight, with_empty_head),
    ]:
        if weight <= 0:
            continue
        if name.startswith("deep_supervision"):
            raise InputError(key, f"{name} already weighs its side outputs and empty head; set 0")
        loss = wrap(loss, weight)
    return loss
