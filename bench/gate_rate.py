"""How often a run's tuned cut empties tiles on OOF and on test, and what the peak gate adds.

Usage: python -m bench gate_rate --data-dir DATA --run RUN_DIR [--out FILE]

RUN_DIR is a finished run (results/blend/{oof,test}.parquet, cv.json). The cut is tuned on
single-model OOF maps while test maps are the mean of the fold models, which is smoother: if
averaging lowered the peaks, the gate would empty more test tiles than OOF tiles. Records the
share of non-blank tiles the cut predicts empty on each, the true share on train, and the tuned
OOF metric with the area rule alone, the peak gate alone, and both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import write_result
from saltseg.binarize import Cut, best_cell, binarization_table, binarize
from saltseg.data import kaggle
from saltseg.probs import align, read_probs


def empty_share(maps: np.ndarray, tiles: kaggle.Tiles, cut: Cut) -> float:
    """Share of non-blank tiles that ``cut`` predicts empty."""
    blank = kaggle.is_blank(tiles.images)
    empty = ~binarize(maps, tiles.images, cut).reshape(len(maps), -1).any(axis=1)
    return float((empty & ~blank).sum() / (~blank).sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    blend = Path(args.run) / "results" / "blend"
    train, test = kaggle.load_train(args.data_dir, 101), kaggle.load_test(args.data_dir, 101)
    oof = align(blend / "oof.parquet", train.ids, *read_probs(blend / "oof.parquet"))
    test_maps = align(blend / "test.parquet", test.ids, *read_probs(blend / "test.parquet"))
    cut = Cut.read(blend / "cv.json")
    oof_scored = np.where(kaggle.is_blank(train.images)[:, None, None], 0.0, oof)
    thresholds, areas, peaks, table = binarization_table(train.masks, oof_scored)
    salt = train.masks.reshape(len(train), -1).any(axis=1)
    non_blank = ~kaggle.is_blank(train.images)
    result = {
        "command": "python -m bench gate_rate --data-dir DATA --run RUN",
        "cut": vars(cut),
        "tuned": {
            "area_rule_alone": best_cell(thresholds, areas, peaks[:1], table[:, :, :1]),
            "peak_gate_alone": best_cell(thresholds, areas[:1], peaks, table[:, :1, :]),
            "both": best_cell(thresholds, areas, peaks, table),
        },
        "predicted_empty_share_non_blank": {
            "oof": empty_share(oof, train, cut),
            "test": empty_share(test_maps, test, cut),
        },
        "true_empty_share_non_blank_train": float((~salt & non_blank).sum() / non_blank.sum()),
    }
    write_result("gate_rate", result, args.out, quiet=True)
    print(json.dumps({k: result[k] for k in ("cut", "tuned", "predicted_empty_share_non_blank")}))


if __name__ == "__main__":
    main()
