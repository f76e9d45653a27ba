"""Mosaics as sections: image, truth and prediction side by side; before and after
post-processing side by side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg.binarize import Cut, binarize
from saltseg.data import kaggle
from saltseg.io import atomic_dir, check_folder_output
from saltseg.mosaic.draw import render_mosaic
from saltseg.mosaic.tables import LAYOUT, read_table
from saltseg.probs import align, read_probs
from saltseg.report.figure import new_figure, save_figure

TEST_BGR = (255, 255, 0)  # cyan: test predictions (train masks are red, as in render_mosaic)
CHANGED_BGR = (0, 220, 0)  # green box: a tile the post-processing changed
TEST_TILE_BGR = (0, 215, 255)  # thin yellow frame: a test tile


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
    return _tint(picture, salt)


def _tint(picture: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """``picture`` with the 0/1 canvas ``salt`` tinted and outlined in cyan (predictions)."""
    on = salt.astype(bool)
    picture[on] = (picture[on] * 0.6 + np.array(TEST_BGR) * 0.4).astype(np.uint8)
    contours, _ = cv2.findContours(salt, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, TEST_BGR, 1)
    return picture


def _masks(path, tiles, cut: Cut | float) -> dict[str, np.ndarray]:
    ids, maps = read_probs(path)
    masks = binarize(align(path, tiles.ids, ids, maps), tiles.images, cut)
    return dict(zip(tiles.ids, masks))


def _section_panels(rows, images, truth, predicted, h, w) -> list[np.ndarray]:
    """The mosaic's image alone, with the train masks (red), and with every prediction (cyan:
    OOF predictions on train tiles, test predictions on test tiles)."""
    plain = render_mosaic(rows, images)
    labelled = render_mosaic(rows, images, truth)
    salt, _, _ = _salt_canvas(rows, predicted, h, w)
    return [plain, labelled, _tint(plain.copy(), salt)]


def plot_mosaics_before_after(
    layout_parquet: str | Path,
    data_dir: str | Path,
    tile: int,
    test_masks_before: str | Path,
    test_masks_after: str | Path,
    out_dir: str | Path,
    n: int = 3,
    threshold_before: Cut | float = 0.5,
    oof: str | Path | None = None,
) -> dict[str, Any]:
    """Draw the ``n`` largest mosaics holding test tiles, before and after post-processing.

    Each figure ``out_dir/mosaic<id>.png`` shows the mosaic twice, side by side: train masks
    (truth) in red, test tiles framed in yellow with their predictions in cyan, and the test
    tiles whose mask the post-processing changed boxed in green. With ``oof``, each mosaic is
    also drawn as a section, ``out_dir/section<id>.png``: the image, the truth where labelled,
    and the predictions (OOF on train tiles, binarised like the test maps), so that a reviewer
    can judge them across tile borders. ``out_dir`` is replaced as a whole (atomically); it is
    left empty when no mosaic of two or more tiles holds a test tile.

    Args:
        layout_parquet: mosaic layout with columns id, mosaic_id, x, y (``results/mosaic``).
        data_dir: dataset in Kaggle layout.
        tile: tile side in pixels.
        test_masks_before: test maps before post-processing (probability parquet).
        test_masks_after: test masks after post-processing (probability parquet, value > 0.5).
        oof: OOF maps of the same models as ``test_masks_before`` (probability parquet).
        out_dir: the directory of figures to write.
        n: how many mosaics to draw.
        threshold_before: how ``test_masks_before`` is binarised (pass the submission's
            cut when it holds probabilities rather than 0/1 masks).

    Returns:
        ``mosaics`` (the mosaic ids drawn, largest first), ``files`` (their names) and
        ``changed_tiles`` (test tiles whose mask differs before and after, in all mosaics).

    Raises:
        InputError: unreadable inputs, a layout without id, mosaic_id, x, y, or a test id without
            a mask.
    """
    check_folder_output(out_dir)  # refused before minutes of reading and drawing
    layout = read_table(layout_parquet, LAYOUT)
    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    images = dict(zip(train.ids + test.ids, np.concatenate([train.images, test.images])))
    train_masks = dict(zip(train.ids, train.masks))
    before = _masks(test_masks_before, test, threshold_before)
    after = _masks(test_masks_after, test, 0.5)
    predicted = {**_masks(oof, train, threshold_before), **before} if oof else None
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
            if predicted is not None:
                name = f"section{int(mosaic_id):04d}.png"
                panels = _section_panels(rows, images, train_masks, predicted, tile, tile)
                _draw_section(panels, mosaic_id, info, tmp / name)
                files.append(name)
    return {
        "mosaics": [int(m) for m in sizes.index],
        "files": files,
        "changed_tiles": len(changed),
    }


def _draw_panels(pictures, titles, suptitle, handles, out_png) -> None:
    """The pictures side by side under their titles, the legend below."""
    h, w = pictures[0].shape[:2]
    panel_w = 7.0 if w >= h else max(3.0, 7.0 * w / h)
    panel_h = panel_w * h / w
    fig = new_figure(len(pictures) * panel_w + 0.4, panel_h + 1.4)
    axes = fig.subplots(1, len(pictures))
    for ax, picture, title in zip(axes, pictures, titles):
        ax.imshow(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), interpolation="antialiased")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(suptitle, fontsize=13)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=10)
    save_figure(fig, out_png)


def _title(mosaic_id, info) -> str:
    return f"Mosaic {int(mosaic_id)}: {int(info['tiles'])} tiles, {int(info['tests'])} of them test"


def _draw_section(pictures, mosaic_id, info, out_png) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(color="red", alpha=0.6, label="train mask (truth)"),
        Patch(color="cyan", alpha=0.6, label="prediction (OOF on train tiles)"),
    ]
    titles = ["image", "truth (train tiles)", "prediction"]
    _draw_panels(pictures, titles, _title(mosaic_id, info), handles, out_png)


def _draw_pair(pictures, mosaic_id, info, n_changed, out_png) -> None:
    from matplotlib.patches import Patch

    changes = f"{n_changed} tile{'s' * (n_changed != 1)} changed"
    titles = ["before post-processing", f"after post-processing ({changes})"]
    handles = [
        Patch(color="red", alpha=0.6, label="train mask (truth)"),
        Patch(fill=False, edgecolor=(1, 0.84, 0), lw=1, label="test tile"),
        Patch(color="cyan", alpha=0.6, label="test prediction"),
        Patch(
            fill=False, edgecolor=(0, 0.86, 0), lw=2, label="test tile changed by post-processing"
        ),
    ]
    _draw_panels(pictures, titles, _title(mosaic_id, info), handles, out_png)
