"""The report's figures, each written atomically; the format follows the suffix (.png, .svg).

Every figure is drawn on its own ``Figure`` with an Agg canvas: no pyplot state, no global backend
switch, and matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg.data import kaggle
from saltseg.errors import InputError
from saltseg.io import atomic_dir, atomic_path, write_json
from saltseg.metrics import tile_scores
from saltseg.mosaic.draw import render_mosaic
from saltseg.probs import align, binarize, read_probs

DPI = 110
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_metric"]
TEST_BGR = (255, 255, 0)  # cyan: test predictions (train masks are red, as in render_mosaic)
CHANGED_BGR = (0, 220, 0)  # green box: a tile the post-processing changed
TEST_TILE_BGR = (0, 215, 255)  # thin yellow frame: a test tile
GALLERY_PER_ROW = 4  # tiles (image | truth | prediction triplets) per gallery row


def _figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI)


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
    fig = _figure(15, 4.6)
    axes = fig.subplots(1, 3)
    colors = [f"C{k % 10}" for k in range(len(frames))]
    for (label, frame), color in zip(frames.items(), colors):
        x = frame["step"]
        axes[0].plot(x, frame["train_loss"], color=color, lw=1.6)
        axes[0].plot(x, frame["val_loss"], color=color, lw=1.6, ls="--")
        axes[1].plot(x, frame["val_metric"], color=color, lw=1.6, marker=".", label=label)
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
    _save(fig, out_png)
    return {"folds": len(frames), "epochs": max(len(f) for f in frames.values())}


def _confusion(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Empty/non-empty confusion counts; the positive class is "tile has salt"."""
    t, p = truth.reshape(len(truth), -1).any(1), pred.reshape(len(pred), -1).any(1)
    return {
        "tp": int((t & p).sum()),
        "fp": int((~t & p).sum()),
        "fn": int((t & ~p).sum()),
        "tn": int((~t & ~p).sum()),
    }


def plot_oof_gallery(
    data_dir: str | Path,
    tile: int,
    oof_parquet: str | Path,
    threshold: float,
    out_png: str | Path,
    n: int = 24,
    counts_json: str | Path | None = None,
) -> dict[str, Any]:
    """Draw the ``n`` worst OOF tiles (image | truth | prediction) and the empty/non-empty table.

    Predictions are ``prob > threshold`` with blank tiles forced empty, as in the submission.
    Tiles are sorted from worst to best by the competition's tile score; ties put the tile with
    more wrong pixels first, then go by id.

    Args:
        data_dir: dataset in Kaggle layout (train images and masks).
        tile: tile side in pixels.
        oof_parquet: OOF probabilities (saltseg probability parquet, one map per train id).
        threshold: binarisation threshold.
        out_png: the figure to write.
        n: how many of the worst tiles to draw (all when fewer).
        counts_json: when given, the counts, threshold and mean score are written there as JSON.

    Returns:
        ``tp, fp, fn, tn`` (positive = the tile has salt: ``fp`` is an empty tile predicted with
        salt, ``fn`` a salt tile predicted empty), ``n_tiles``, ``shown``, ``mean_score``,
        ``threshold``, and ``order``: every train id from worst to best.

    Raises:
        InputError: unreadable inputs, a train id without an OOF map, or ``n < 1``.
    """
    if n < 1:
        raise InputError("n", f"expected at least 1 tile to show, got {n}")
    train = kaggle.load_train(data_dir, tile)
    maps_ids, maps = read_probs(oof_parquet)
    probs = align(oof_parquet, train.ids, maps_ids, maps)
    pred = binarize(probs, train.images, threshold).astype(bool)
    truth = train.masks.astype(bool)
    scores = tile_scores(truth, pred)
    wrong = (truth != pred).reshape(len(truth), -1).sum(1)
    order = np.lexsort((np.array(train.ids), -wrong, scores))
    counts = _confusion(truth, pred)
    shown = order[: min(n, len(order))]
    summary = {
        **counts,
        "n_tiles": len(train),
        "shown": len(shown),
        "mean_score": float(scores.mean()),
        "threshold": float(threshold),
    }
    _draw_gallery(train, truth, pred, scores, shown, summary, out_png)
    if counts_json is not None:
        write_json(counts_json, summary)
    return {**summary, "order": [train.ids[k] for k in order]}


def _draw_gallery(train, truth, pred, scores, shown, summary, out_png) -> None:
    per_row = min(GALLERY_PER_ROW, len(shown))
    rows = math.ceil(len(shown) / per_row)
    fig = _figure(3.6 * per_row, 1.45 * rows + 1.6)
    head, body = fig.subfigures(2, 1, height_ratios=[1.6, 1.45 * rows])
    head.suptitle(
        f"OOF gallery: worst {len(shown)} of {summary['n_tiles']} tiles by tile score "
        f"(threshold {summary['threshold']:.2f}, mean tile score {summary['mean_score']:.3f})",
        fontsize=12,
    )
    note, table_ax = head.subplots(1, 2, width_ratios=[1.4, 1])
    note.axis("off")
    note.text(
        0,
        0.5,
        "Each tile: image | true mask (white = salt) | prediction on the image (red).\n"
        "Tile score: share of IoU thresholds 0.50..0.95 passed; an empty truth\n"
        "scores 1 only with an empty prediction. Blank tiles are predicted empty.",
        va="center",
        fontsize=9,
    )
    table_ax.axis("off")
    c = summary
    table = table_ax.table(
        cellText=[[f"TN {c['tn']}", f"FP {c['fp']}"], [f"FN {c['fn']}", f"TP {c['tp']}"]],
        rowLabels=["truth empty", "truth salt"],
        colLabels=["predicted empty", "predicted salt"],
        cellLoc="center",
        bbox=[0.3, 0.05, 0.6, 0.7],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table_ax.text(0.6, 0.82, "tiles by emptiness (positive: salt)", ha="center", fontsize=9)
    grid = body.add_gridspec(
        rows, 4 * per_row - 1, width_ratios=([1, 1, 1, 0.2] * per_row)[:-1], wspace=0.05
    )
    for slot, k in enumerate(shown):
        r, c0 = divmod(slot, per_row)
        panels = [body.add_subplot(grid[r, 4 * c0 + j]) for j in range(3)]
        one = pd.DataFrame({"id": ["t"], "x": [0], "y": [0]})
        overlay = render_mosaic(one, {"t": train.images[k]}, {"t": pred[k].astype(np.uint8)})
        panels[0].imshow(train.images[k], cmap="gray", vmin=0, vmax=255)
        panels[1].imshow(truth[k], cmap="gray", vmin=0, vmax=1)
        panels[2].imshow(cv2.cvtColor(overlay, cv2.COLOR_BGR2RGB))
        panels[1].set_title(f"{train.ids[k]}  score {scores[k]:.2f}", fontsize=8)
        for ax in panels:
            ax.set_xticks([])
            ax.set_yticks([])
    _save(fig, out_png)


def _salt_canvas(rows: pd.DataFrame, masks: Mapping[str, np.ndarray], h: int, w: int):
    """The mosaic-sized 0/1 picture of ``masks`` (tiles without one stay 0), as render_mosaic."""
    x0, y0 = int(rows["x"].min()), int(rows["y"].min())
    canvas = np.zeros(((rows["y"].max() - y0 + 1) * h, (rows["x"].max() - x0 + 1) * w), np.uint8)
    for tid, x, y in zip(rows["id"], rows["x"], rows["y"]):
        if tid in masks:
            canvas[(y - y0) * h : (y - y0 + 1) * h, (x - x0) * w : (x - x0 + 1) * w] = masks[tid]
    return canvas, x0, y0


def _mosaic_picture(rows, images, train_masks, test_masks, changed, h, w) -> np.ndarray:
    """Train masks red (render_mosaic), test tiles framed yellow, their predictions cyan, and
    the test tiles the post-processing changed boxed green (under the cyan, which stays seen)."""
    picture = render_mosaic(rows, images, train_masks)
    salt, x0, y0 = _salt_canvas(rows, test_masks, h, w)
    for tid, x, y in zip(rows["id"], rows["x"], rows["y"]):
        top_left = ((x - x0) * w + 1, (y - y0) * h + 1)
        bottom_right = ((x - x0 + 1) * w - 2, (y - y0 + 1) * h - 2)
        if tid in changed:
            cv2.rectangle(picture, top_left, bottom_right, CHANGED_BGR, 3)
        elif tid in test_masks:
            cv2.rectangle(picture, top_left, bottom_right, TEST_TILE_BGR, 1)
    on = salt.astype(bool)
    picture[on] = (picture[on] * 0.6 + np.array(TEST_BGR) * 0.4).astype(np.uint8)
    contours, _ = cv2.findContours(salt, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, TEST_BGR, 1)
    return picture


def _test_masks(path, test, cut: float) -> dict[str, np.ndarray]:
    ids, maps = read_probs(path)
    masks = binarize(align(path, test.ids, ids, maps), test.images, cut)
    return dict(zip(test.ids, masks))


def plot_mosaics_before_after(
    layout_parquet: str | Path,
    data_dir: str | Path,
    tile: int,
    test_masks_before: str | Path,
    test_masks_after: str | Path,
    out_dir: str | Path,
    n: int = 3,
    threshold_before: float = 0.5,
) -> dict[str, Any]:
    """Draw the ``n`` largest mosaics holding test tiles, before and after post-processing.

    Each figure ``out_dir/mosaic<id>.png`` shows the mosaic twice, side by side: train masks
    (truth) in red, test tiles framed in yellow with their predictions in cyan, and the test
    tiles whose mask the post-processing changed boxed in green. ``out_dir`` is replaced as a
    whole (atomically); it is left empty when no mosaic of two or more tiles holds a test tile.

    Args:
        layout_parquet: mosaic layout with columns id, mosaic_id, x, y (``results/mosaic``).
        data_dir: dataset in Kaggle layout.
        tile: tile side in pixels.
        test_masks_before: test maps before post-processing (probability parquet).
        test_masks_after: test masks after post-processing (probability parquet, value > 0.5).
        out_dir: the directory of figures to write.
        n: how many mosaics to draw.
        threshold_before: ``test_masks_before`` is cut at this value (pass the submission's
            threshold when it holds probabilities rather than 0/1 masks).

    Returns:
        ``mosaics`` (the mosaic ids drawn, largest first), ``files`` (their names) and
        ``changed_tiles`` (test tiles whose mask differs before and after, in all mosaics).

    Raises:
        InputError: unreadable inputs, a layout without id, mosaic_id, x, y, or a test id without
            a mask.
    """
    layout = pd.read_parquet(layout_parquet)
    missing = {"id", "mosaic_id", "x", "y"} - set(layout.columns)
    if missing:
        raise InputError(layout_parquet, f"expected columns id, mosaic_id, x, y; missing {missing}")
    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    images = dict(zip(train.ids + test.ids, np.concatenate([train.images, test.images])))
    train_masks = dict(zip(train.ids, train.masks))
    before = _test_masks(test_masks_before, test, threshold_before)
    after = _test_masks(test_masks_after, test, 0.5)
    changed = {i for i in test.ids if not np.array_equal(before[i], after[i])}
    layout = layout[layout["id"].isin(set(images))]
    is_test = layout["id"].isin(set(test.ids))  # once: a per-group isin took minutes on real data
    sizes = (
        layout.assign(test=is_test)
        .groupby("mosaic_id")
        .agg(tiles=("id", "size"), tests=("test", "sum"))
    )
    sizes = sizes[(sizes["tiles"] > 1) & (sizes["tests"] > 0)]
    sizes = sizes.sort_values("tiles", ascending=False, kind="stable").head(n)
    files = []
    with atomic_dir(out_dir) as tmp:
        for mosaic_id, info in sizes.iterrows():
            rows = layout[layout["mosaic_id"] == mosaic_id]
            pictures = [
                _mosaic_picture(rows, images, train_masks, masks, changed, tile, tile)
                for masks in (before, after)
            ]
            n_changed = int(rows["id"].isin(changed).sum())
            name = f"mosaic{int(mosaic_id):04d}.png"
            _draw_pair(pictures, mosaic_id, info, n_changed, tmp / name)
            files.append(name)
    return {
        "mosaics": [int(m) for m in sizes.index],
        "files": files,
        "changed_tiles": len(changed),
    }


def _draw_pair(pictures, mosaic_id, info, n_changed, out_png) -> None:
    from matplotlib.patches import Patch

    h, w = pictures[0].shape[:2]
    panel_w = 7.0 if w >= h else max(3.0, 7.0 * w / h)
    panel_h = panel_w * h / w
    fig = _figure(2 * panel_w + 0.4, panel_h + 1.4)
    axes = fig.subplots(1, 2)
    changes = f"{n_changed} tile{'s' * (n_changed != 1)} changed"
    titles = ["before post-processing", f"after post-processing ({changes})"]
    for ax, picture, title in zip(axes, pictures, titles):
        ax.imshow(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), interpolation="antialiased")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"Mosaic {int(mosaic_id)}: {int(info['tiles'])} tiles, {int(info['tests'])} of them test",
        fontsize=13,
    )
    handles = [
        Patch(color="red", alpha=0.6, label="train mask (truth)"),
        Patch(fill=False, edgecolor=(1, 0.84, 0), lw=1, label="test tile"),
        Patch(color="cyan", alpha=0.6, label="test prediction"),
        Patch(
            fill=False, edgecolor=(0, 0.86, 0), lw=2, label="test tile changed by post-processing"
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=10)
    _save(fig, out_png)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d} min"


def plot_rule_runtimes(benchmark_dir: str | Path, out_png: str | Path) -> dict[str, float]:
    """Draw total wall-clock seconds per rule from Snakemake ``benchmark:`` files.

    Reads ``benchmark_dir/<rule>/*.tsv`` (column ``s``); a file with several rows (``repeat()``)
    counts its mean, and a rule's total is the sum over its jobs (files).

    Returns:
        rule -> total seconds.

    Raises:
        InputError: no benchmark files, or one without a numeric ``s`` column.
    """
    files = sorted(Path(benchmark_dir).glob("*/*.tsv"))
    if not files:
        raise InputError(benchmark_dir, "expected benchmark files <rule>/*.tsv, found none")
    totals: dict[str, float] = {}
    jobs: dict[str, int] = {}
    for path in files:
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise InputError(path, f"expected a Snakemake benchmark TSV ({err})") from None
        seconds = pd.to_numeric(frame.get("s", pd.Series(dtype=float)), errors="coerce")
        if seconds.dropna().empty:
            raise InputError(path, "expected a numeric column 's' (seconds)")
        rule = path.parent.name
        totals[rule] = totals.get(rule, 0.0) + float(seconds.mean())
        jobs[rule] = jobs.get(rule, 0) + 1
    rules = sorted(totals, key=lambda r: (totals[r], r))  # largest ends on top
    fig = _figure(9, 0.42 * len(rules) + 1.6)
    ax = fig.subplots()
    values = [totals[r] for r in rules]
    bars = ax.barh(rules, values, color="C0")
    labels = [f"{_duration(totals[r])} ({jobs[r]} job{'s' * (jobs[r] > 1)})" for r in rules]
    ax.bar_label(bars, labels=labels, padding=4, fontsize=9)
    ax.set_xlim(0, max(values) * 1.3 or 1)
    ax.set_xlabel("wall-clock seconds, summed over the rule's jobs")
    ax.grid(axis="x", alpha=0.3)
    total = sum(values)
    ax.set_title(f"Run time per rule: {_duration(total)} over {sum(jobs.values())} jobs")
    _save(fig, out_png)
    return {r: totals[r] for r in reversed(rules)}
