"""Stitched prediction on a fresh synthetic section vs. the ensemble's per-tile OOF score.

Usage (after a default run): python -m bench section_quality [--models results/stage1] [--seed 2026]
Draws a section the models never saw, predicts it with ``predict_section`` (overlapping tiles,
Hann blending), then scores the stitched mask against the true mask: pixel IoU over the section
and the competition metric on the section's own 101x101 grid, next to the OOF metric at the same
threshold from ``<models>/ensemble/cv.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.common import REPO, write_result
from saltseg.data.synthetic import draw_section
from saltseg.metrics import competition_metric
from saltseg.sections import predict_section


def grid_tiles(array: np.ndarray, tile: int = 101) -> np.ndarray:
    """The section cut into its own non-overlapping tiles."""
    h, w = array.shape
    return np.stack(
        [array[y : y + tile, x : x + tile] for y in range(0, h, tile) for x in range(0, w, tile)]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(REPO / "results/stage1"))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    image, truth = draw_section(np.random.default_rng(args.seed), 4, 6)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "section.npy", image.astype(np.float32))
        run = predict_section(args.models, Path(tmp) / "section.npy", Path(tmp) / "out")
        mask = np.load(Path(tmp) / "out" / "mask.npy").astype(bool)
    truth = truth.astype(bool)
    cv = json.loads((Path(args.models) / "ensemble" / "cv.json").read_text())
    iou = float((truth & mask).sum() / (truth | mask).sum())
    write_result(
        "section_quality",
        {
            "section_shape": list(image.shape),
            "seed": args.seed,
            "threshold": run["threshold"],
            "stride": run["stride"],
            "section_pixel_iou": iou,
            "stitched_metric_on_section_tiles": competition_metric(
                grid_tiles(truth), grid_tiles(mask)
            ),
            "ensemble_oof_metric_tuned": cv["metric_tuned"],
            "tiles_per_s": run["tiles_per_s"],
        },
        args.out,
        headline=f"pixel IoU {iou:.3f}; {run['tiles_per_s']:.1f} tiles/s",
    )


if __name__ == "__main__":
    main()
