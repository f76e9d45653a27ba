"""Training curves: loss, validation metric and learning rate per fold, across phases."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.errors import InputError
from saltseg.report.figure import new_figure, save_figure

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_metric"]


def _read_history(label: str, path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, f"expected a training history CSV ({err})") from None
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, f"expected history columns {HISTORY_COLUMNS}; missing {missing}")
    if frame.empty:
        raise InputError(path, f"expected at least one epoch for {label}, got none")
    if "phase" not in frame.columns:
        frame["phase"] = 0
    frame = frame.sort_values(["phase", "epoch"], kind="stable").reset_index(drop=True)
    frame["step"] = np.arange(1, len(frame) + 1)  # epochs counted across phases
    return frame


def plot_training_curves(
    histories: Mapping[str, str | Path], out_png: str | Path, title: str | None = None
) -> dict[str, int]:
    """Draw one model's training curves: loss, validation metric and lr against epoch, per fold.

    Epochs are counted across phases (each phase restarts its own ``epoch`` at 0); dotted
    vertical lines mark where a new phase begins.

    Args:
        histories: fold label (e.g. ``"fold0"``) -> ``history.csv`` with columns phase, epoch,
            lr, train_loss, val_loss, val_metric (others ignored; NaN values leave gaps).
        out_png: the figure to write (``.png`` or ``.svg``).
        title: shown above the panels, e.g. the model name.

    Returns:
        ``{"folds": number of folds, "epochs": most epochs of any fold}``.

    Raises:
        InputError: no histories, or a file that is missing, empty or lacks a column.
    """
    if not histories:
        raise InputError("histories", "expected at least one fold's history.csv, got none")
    frames = {label: _read_history(label, path) for label, path in histories.items()}
    fig = new_figure(15, 4.6)
    axes = fig.subplots(1, 3)
    colors = [f"C{k % 10}" for k in range(len(frames))]
    for (label, frame), color in zip(frames.items(), colors):
        x = frame["step"]
        validated = frame.dropna(subset=["val_loss"])  # val_every > 1 validates some epochs
        axes[0].plot(x, frame["train_loss"], color=color, lw=1.6)
        axes[0].plot(validated["step"], validated["val_loss"], color=color, lw=1.6, ls="--")
        axes[1].plot(
            validated["step"], validated["val_metric"], color=color, lw=1.6, marker=".", label=label
        )
        axes[2].plot(x, frame["lr"], color=color, lw=1.6, label=label)
    first = next(iter(frames.values()))
    new_phase = first["phase"].diff().fillna(0) != 0
    for ax in axes:
        for step, phase in zip(first["step"][new_phase], first["phase"][new_phase]):
            ax.axvline(step - 0.5, color="0.6", ls=":", lw=1)
            ax.text(
                step - 0.5,
                0.01,
                f" phase {phase}",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                color="0.4",
            )
        ax.set_xlabel("epoch (counted across phases)")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    style = [
        Line2D([], [], color="0.3", lw=1.6, label="train"),
        Line2D([], [], color="0.3", lw=1.6, ls="--", label="validation"),
    ]
    folds = [Line2D([], [], color=c, lw=1.6, label=lab) for lab, c in zip(frames, colors)]
    axes[0].legend(handles=style + folds, fontsize=8, ncols=2)
    axes[0].set_title("Loss")
    axes[0].set_ylabel("loss")
    axes[1].set_title("Validation metric (threshold 0.5, no TTA)")
    axes[1].set_ylabel("competition metric")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=8)
    lrs = pd.concat([f["lr"] for f in frames.values()]).dropna()
    if len(lrs) and lrs.min() > 0 and lrs.max() / lrs.min() > 20:
        axes[2].set_yscale("log")
    axes[2].set_title("Learning rate")
    axes[2].set_ylabel("learning rate")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{title or 'Training curves'}: {len(frames)} folds", fontsize=13)
    save_figure(fig, out_png)
    return {"folds": len(frames), "epochs": max(len(f) for f in frames.values())}
