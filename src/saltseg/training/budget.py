"""Time budgets: phases given in minutes, sized in whole cosine cycles from the seconds their
epochs take, and a fold's slot shared by its training phases and its prediction."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from saltseg.training.optim import n_cycles

log = logging.getLogger(__name__)


def predict_forwards(params: dict[str, Any], n_val: int, n_test: int, tta: tuple[str, ...]) -> int:
    """Forward passes of the fold's prediction (0 for a model without ``slot_minutes``): its
    ``n_val`` validation and ``n_test`` test tiles, once per TTA and per snapshot kept."""
    if not params.get("slot_minutes"):
        return 0
    snapshots = max(1, sum(phase.get("snapshots", 0) for phase in params["phases"]))
    return (n_val + n_test) * len(tta) * snapshots


def budget_epochs(phase: dict[str, Any], done: int, spent: float, epoch_seconds: float) -> int:
    """Epochs of a phase with a ``minutes`` budget, re-sized after each epoch of its first cycle.

    The ``done`` epochs took ``spent`` seconds; more epochs of ``epoch_seconds`` follow, in the
    whole cosine cycles whose end comes nearest the budget (so a run neither leaves most of an
    epoch unused nor overruns by more than half a cycle), with at least one epoch per cycle and
    never a first cycle shorter than the epochs already done in it.
    """
    cycles = n_cycles(phase)
    fit = done + max(phase["minutes"] * 60 - spent, 0.0) / max(epoch_seconds, 1e-9)
    return max(cycles, cycles * round(fit / cycles), done * cycles)


def slot_minutes(
    phases: list[dict[str, Any]], p: int, slot: float, spent_before: float, predict_seconds: float
) -> float:
    """Minutes of budget phase ``p`` when training and prediction share a ``slot`` of minutes.

    What the slot leaves after the ``spent_before`` seconds of the phases before ``p`` and the
    ``predict_seconds`` the prediction will take is split over phase ``p`` and the later budget
    phases in proportion to their ``minutes``; an overrun of an earlier phase comes out of the
    later ones, so the slot holds. Phases without ``minutes`` after ``p`` are not counted.
    """
    share = phases[p]["minutes"] / sum(q["minutes"] for q in phases[p:] if "minutes" in q)
    return max(slot * 60 - spent_before - predict_seconds, 0.0) / 60 * share


def phase_minutes(
    params: dict[str, Any], p: int, rows: list[dict], n_val: int, predict_forwards: int
) -> float:
    """Budget phase ``p``'s minutes: its own ``minutes``, or with ``slot_minutes`` its share of
    what the slot leaves after the earlier phases and the prediction (:func:`slot_minutes`), the
    prediction timed at the pace of the latest validation (none yet: not counted)."""
    phases = params["phases"]
    if not params.get("slot_minutes"):
        return phases[p]["minutes"]
    vals = [r["val_seconds"] for r in rows if "val_seconds" in r]
    predict = vals[-1] / max(n_val, 1) * predict_forwards if vals else 0.0
    before = seconds_of(r for r in rows if r["phase"] < p)
    return slot_minutes(phases, p, params["slot_minutes"], before, predict)


def size_phase(
    phase: dict[str, Any],
    p: int,
    row: dict[str, Any],
    history: list[dict],
    val_every: int,
    minutes: float,
) -> None:
    """Set the epochs of budget phase ``p`` to fit ``minutes`` from the seconds its epochs took
    so far (recorded in ``row`` as ``budget_minutes``).

    The time left is spent at the median pace of the last three epochs after their first step
    (warm-up, compilation, a job starting next to this one pass), plus the validations.
    """
    rows = [r for r in history if r["phase"] == p] + [row]
    vals = [r["val_seconds"] for r in rows if "val_seconds" in r]
    val = vals[-1] if vals else 0.0
    spent = seconds_of(rows) + val  # + the last check
    pace = float(np.median([r["steady_seconds"] for r in rows[-3:]])) + val / val_every
    epochs = budget_epochs({**phase, "minutes": minutes}, len(rows), spent, pace)
    if epochs != phase["epochs"]:
        log.info("phase %d: %.1f min fit %d epochs of %.1f s", p, minutes, epochs, pace)
    phase["epochs"] = epochs
    row["budget_minutes"] = minutes


def seconds_of(rows: Iterable[dict]) -> float:
    """Seconds the epochs of ``rows`` took, their validations included."""
    return sum(r["seconds"] + r.get("val_seconds", 0.0) for r in rows)
