"""The score lost to resizing alone: true masks through 101 -> N -> 101 (resize_ceiling.json).

Usage: python -m bench resize_ceiling --data-dir ../shared/tgs [--sizes 64,96,128]

Each labelled mask goes through the models' own input geometry (saltseg.models.geometry:
bilinear resize to N, then back to 101) as a float map, is cut at 0.5 and scored against itself
with the competition metric, over all tiles, fold 0 of the ablation, and per coverage bucket.
A perfect model at N pixels can score no higher.
"""

from __future__ import annotations

import argparse

import torch

from bench.ablation_cpu import in_fold0
from bench.common import write_result
from saltseg.data import kaggle
from saltseg.metrics import bucket_scores, competition_metric
from saltseg.models.geometry import Geometry


def round_trip(masks, size: int):
    """Masks ``(N, 101, 101)`` resized to ``size`` and back, as the network sees and returns."""
    geometry = Geometry(masks.shape[-1], size, size, stride=1)
    x = torch.from_numpy(masks).float()[:, None]
    return geometry.to_tile(geometry.to_network(x))[:, 0].numpy() > 0.5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
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
        "resize_ceiling",
        {
            "command": f"python -m bench resize_ceiling --data-dir DATA --sizes {args.sizes}",
            "n_tiles": len(tiles),
            "sizes": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
