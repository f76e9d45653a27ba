"""How good are pseudo-labels from a teacher of the `cpu` profile's strength? (pseudo_quality.json)

Usage: python -m bench pseudo_quality --data-dir ../shared/tgs --variant base64_lovasz

Takes a model trained by bench/ablation_cpu.py on the train tiles of real fold 0, predicts fold
0's tiles (which it never saw) and treats them as if they were test tiles: each pseudo-label
selection of saltseg.pseudo keeps the tiles it would keep, and since these tiles are labelled we
can score what a later stage would learn from: the share kept, the metric of the kept labels
against the truth, the share of empty tiles among them, and the same per coverage bucket.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from bench.ablation_cpu import variants
from bench.common import REPO, write_result
from saltseg.data import kaggle
from saltseg.data.folds import make_folds
from saltseg.inference.predict import predict_probs
from saltseg.metrics import bucket_scores, competition_metric, coverage_bucket, tile_scores
from saltseg.models import build_model
from saltseg.pseudo import select_confident, select_phalanx
from saltseg.runtime.device import resolve_runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--variant", default="base64_lovasz")
    parser.add_argument("--work", default=str(REPO / "results" / "ablation"), help="ablation_cpu's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tiles = kaggle.load_train(args.data_dir, 101)
    folds = make_folds(tiles.ids, kaggle.read_depths(args.data_dir, tiles.ids), 5, 0, "depth")
    val = tiles.subset(folds.set_index("id")["fold"].loc[tiles.ids].to_numpy() == 0)
    table = variants(7.0)
    if args.variant not in table:
        sys.exit(f"--variant: expected one of {', '.join(table)}, got {args.variant!r}")
    params = table[args.variant]
    state = torch.load(Path(args.work) / args.variant / "checkpoint.pt", weights_only=False)
    model = build_model(params["arch"], 101, **params["model"])
    runtime = resolve_runtime("cpu", "false", "auto")
    probs = np.zeros(val.images.shape, np.float32)
    for snapshot in state["snapshots"]:
        model.load_state_dict(snapshot)
        probs += predict_probs(model, val.images, runtime, 128, ("none", "hflip"))
    probs /= len(state["snapshots"])
    blank = kaggle.is_blank(val.images)
    truth = val.masks.astype(bool)
    labels = (probs > 0.5) & ~blank[:, None, None]  # what saltseg.steps.pseudo_labels writes
    rows = {"teacher": _describe(truth, labels, np.arange(len(val)))}
    for name, table in {
        "confident_0.9": select_confident(probs, blank, 5, 0, 0.9),
        "confident_0.97": select_confident(probs, blank, 5, 0, 0.97),
        "phalanx": select_phalanx(probs, blank, 5, 0),
    }.items():
        rows[name] = _describe(truth, labels, table["index"].to_numpy())
    write_result(
        "pseudo_quality",
        {
            "command": f"python -m bench pseudo_quality --data-dir DATA --variant {args.variant}",
            "teacher": params["lever"],
            "teacher_variant": args.variant,
            "n_tiles": len(val),
            "selections": rows,
        },
        args.out,
    )


def _describe(truth: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> dict:
    """Share kept, label quality on the kept tiles, their empty share and bucket mix."""
    if len(keep) == 0:  # a weak teacher (a smoke run) may keep nothing
        return {"kept": 0, "share_kept": 0.0}
    kept_truth, kept_labels = truth[keep], labels[keep]
    buckets = coverage_bucket(kept_truth)
    scores = tile_scores(kept_truth, kept_labels)
    return {
        "kept": len(keep),
        "share_kept": round(len(keep) / len(truth), 3),
        "label_metric": round(competition_metric(kept_truth, kept_labels), 4),
        "share_truly_empty": round(float((buckets == "empty").mean()), 3),
        "share_labelled_empty": round(float((~kept_labels.any(axis=(1, 2))).mean()), 3),
        "wrong_tiles (score < 0.5)": int((scores < 0.5).sum()),
        "buckets": bucket_scores(kept_truth, kept_labels),
    }


if __name__ == "__main__":
    main()
