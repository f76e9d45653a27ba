"""The score lost to resizing alone: true masks through 101 -> N -> 101 (resize_ceiling.json).

Usage: python bench/resize_ceiling.py --data-dir ../shared/tgs [--sizes 64,96,128]

Each labelled mask goes through the models' own input geometry (saltseg.models.geometry:
bilinear resize to N, then back to 101) as a float map, is cut at 0.5 and scored against itself
with the competition metric, over all tiles, fold 0 of the ablation, and per coverage bucket.
A perfect model at N pixels can score no higher.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from saltseg.data import kaggle
from saltseg.metrics import bucket_scores, competition_metric
from saltseg.models.geometry import Geometry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_cpu import in_fold0  # noqa: E402  (bench/ is no package)
from default_dag import write_result  # noqa: E402


def round_trip(masks, size: int):
    """Masks ``(N, 101, 101)`` resized to ``size`` and back, as the network sees and returns."""
    geometry = Geometry(masks.shape[-1], size, size, stride=1)
    x = torch.from_numpy(masks).float()[:, None]
    return geometry.to_tile(geometry.to_network(x))[:, 0].numpy() > 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--out", default=str(REPO / "bench" / "resize_ceiling.json"))
    args = parser.parse_args()
    tiles = kaggle.load_train(args.data_dir, 101)
    fold0 = in_fold0(args.data_dir, tiles)
    rows = {}
    for size in map(int, args.sizes.split(",")):
        masks = round_trip(tiles.masks, size)
        rows[str(size)] = {
            "all_tiles": competition_metric(tiles.masks, masks),
            "fold0": competition_metric(tiles.masks[fold0], masks[fold0]),
            "buckets": bucket_scores(tiles.masks, masks),
        }
    write_result(
        args.out,
        {
            "command": f"python bench/resize_ceiling.py --data-dir DATA --sizes {args.sizes}",
            "n_tiles": len(tiles),
            "sizes": rows,
        },
    )


if __name__ == "__main__":
    main()
