"""Optimisers and learning-rate schedules for one training phase."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn

from saltseg.errors import InputError

OPTIMIZERS = {
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "rmsprop": lambda params, lr, wd: torch.optim.RMSprop(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(
        params, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True
    ),
}
SCHEDULES = ("constant", "cosine", "plateau")


def build_optimizer(
    model: nn.Module, phase: dict[str, Any], graphed: bool = False
) -> torch.optim.Optimizer:
    """The phase's optimiser: ``adam`` (L2 ``weight_decay``), ``adamw`` (decoupled weight decay),
    ``rmsprop`` or ``sgd`` with Nesterov momentum 0.9.

    ``graphed`` (adam and adamw): the fused, capturable implementation, one kernel launch per
    step and safe to capture in a CUDA graph (:func:`make_graph_safe`).
    """
    name = phase["optimizer"]
    if name not in OPTIMIZERS:
        raise InputError("optimizer", f"expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    wd = phase.get("weight_decay", 0.0)
    if not graphed:
        return OPTIMIZERS[name](model.parameters(), phase["lr"], wd)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    optimizer = kind(
        model.parameters(), lr=phase["lr"], weight_decay=wd, fused=True, capturable=True
    )
    make_graph_safe(optimizer)
    return optimizer


def make_graph_safe(optimizer: torch.optim.Optimizer) -> None:
    """Make a fused Adam(W) safe to step inside a CUDA graph capture.

    torch refuses a capture of ``step()`` unless every param group is ``capturable``
    (``Optimizer._accelerator_graph_capture_health_check``). The lr becomes a one-element tensor
    beside the parameters (one already there is kept): a captured step reads it from that
    memory, and the schedules write their new values into it in place, so replays follow the
    schedule. Step counters move to the parameters' device (an eager checkpoint keeps them on
    the CPU, which a graph cannot read). Called again at the capture, so it holds there too.
    """
    for group in optimizer.param_groups:
        device = group["params"][0].device
        group.update(fused=True, capturable=True, foreach=None)
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):  # kept: a graph reads it
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "step" in state:
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], graphed: bool
) -> None:
    """Resume ``optimizer`` from a checkpoint's ``saved`` state, keeping how this run steps it.

    ``load_state_dict`` brings back the saved groups whole, with the flags of the run that
    wrote them: an eager run's ``capturable: False`` would fail the first capture, and a graphed
    run's lr tensor would reach an eager step. The values (lr, moments, step counts) are kept;
    the form is this run's.
    """
    flags = [
        {key: group[key] for key in ("fused", "capturable", "foreach") if key in group}
        for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(saved)
    for group, kept in zip(optimizer.param_groups, flags):
        group.update(kept)
        if not graphed:
            group["lr"] = float(group["lr"])
    if graphed:
        make_graph_safe(optimizer)


def n_cycles(phase: dict[str, Any]) -> int:
    """Cosine cycles of a phase: ``cycles``, else one per snapshot (at least 1)."""
    return phase.get("cycles") or max(1, phase.get("snapshots", 0))


def cycle_epochs(phase: dict[str, Any]) -> int:
    """Epochs per cosine cycle: the phase's epochs split evenly over its cycles (at least 1)."""
    return max(1, phase["epochs"] // n_cycles(phase))


def takes_snapshot(phase: dict[str, Any], epoch: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends one of the phase's last ``snapshots`` cycles."""
    length = cycle_epochs(phase)
    if not phase.get("snapshots", 0) or (epoch + 1) % length:
        return False
    return (epoch + 1) // length > n_cycles(phase) - phase["snapshots"]


def build_schedule(optimizer: torch.optim.Optimizer, phase: dict[str, Any]):
    """A scheduler stepped once per epoch (``plateau`` is stepped with the validation loss).

    ``cosine`` anneals from ``lr`` to ``min_lr`` over each cycle and restarts (SGDR), so every
    cycle ends at a minimum where a snapshot is taken. It reads the phase's ``epochs`` at every
    step: a budget phase holds ``lr`` until its first epoch sizes it, and may re-size it later.
    """
    name = phase.get("schedule", "constant")
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_cosine_factor, phase))
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=phase.get("patience", 5), min_lr=phase.get("min_lr", 0)
        )
    raise InputError("schedule", f"expected one of {', '.join(SCHEDULES)}, got {name!r}")


def _cosine_factor(phase: dict[str, Any], epoch: int) -> float:
    """``lr`` multiplier at ``epoch``: cosine from 1 to ``min_lr / lr`` over each cycle."""
    if not phase.get("epochs"):
        return 1.0
    length, floor = cycle_epochs(phase), phase.get("min_lr", 0.0) / phase["lr"]
    return floor + (1 - floor) * (1 + math.cos(math.pi * (epoch % length) / length)) / 2
