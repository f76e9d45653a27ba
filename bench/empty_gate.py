"""Does the empty-tile head, read at prediction, beat the minimum-area rule? (empty_gate.json)

Usage: python -m bench empty_gate --data-dir DATA --variant base64_lovasz_empty

Reads the checkpoint that bench/ablation_cpu.py left for ``--variant`` (a model with
``empty_head``) under results/ablation/, predicts fold 0 with flip TTA, and tunes on it the
profile's rule (threshold and minimum mask area) alone and with a gate that empties every tile
whose empty-head probability exceeds ``g``. It records both, and how well each score ranks empty
tiles (ROC AUC): the head's probability and the largest pixel probability.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from bench.ablation_cpu import REPO, in_fold0, variants
from bench.common import write_result
from saltseg.binarize import best_cell, binarization_table, remove_small
from saltseg.data import kaggle
from saltseg.data.dataset import to_tensor
from saltseg.metrics import bucket_scores
from saltseg.models import build_model


def predict_with_head(model: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel and empty-head probabilities, each the mean of the tile and its mirror.

    The model runs in training mode (its output then carries ``empty_logit``) with every
    batch-norm layer in eval mode, so the pixels are exactly those of inference.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    pixels, empty = [], []
    with torch.no_grad():
        for start in range(0, len(images), 128):
            x = to_tensor(images[start : start + 128])
            plain, mirror = model(x), model(x.flip(-1))
            pixels.append((plain["logits"].sigmoid() + mirror["logits"].sigmoid().flip(-1)) / 2)
            empty.append((plain["empty_logit"].sigmoid() + mirror["empty_logit"].sigmoid()) / 2)
    return torch.cat(pixels)[:, 0].numpy(), torch.cat(empty)[:, 0].numpy()


def tuned(truth: np.ndarray, probs: np.ndarray) -> dict:
    grid = binarization_table(truth, probs, min_peaks=np.array([0.0]))  # the area rule alone
    cut, area, _, score = best_cell(*grid)
    buckets = bucket_scores(truth, remove_small(probs > cut, area))
    return {"threshold": cut, "min_area": area, "score": score, "buckets": buckets}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--variant", default="base64_lovasz_empty")
    parser.add_argument("--work", default=str(REPO / "results" / "ablation"), help="ablation_cpu's")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    tiles = kaggle.load_train(args.data_dir, 101)
    val = tiles.subset(in_fold0(args.data_dir, tiles))
    params = variants(32)[args.variant]
    model = build_model(params["arch"], 101, **params["model"])
    work = Path(args.work) / args.variant / "checkpoint.pt"
    model.load_state_dict(torch.load(work, weights_only=False)["snapshots"][-1])
    probs, p_empty = predict_with_head(model, val.images)
    probs = np.where(kaggle.is_blank(val.images)[:, None, None], 0.0, probs)
    is_empty = val.masks.reshape(len(val), -1).max(1) == 0
    gates = {}
    for gate in np.round(np.arange(0.3, 1.0, 0.05), 2):
        gates[str(gate)] = tuned(val.masks, np.where((p_empty > gate)[:, None, None], 0, probs))
    best = max(gates, key=lambda g: gates[g]["score"])
    result = {
        "command": f"python -m bench empty_gate --data-dir DATA --variant {args.variant}",
        "variant": args.variant,
        "n_val": len(val),
        "auc_empty": {
            "empty_head": roc_auc_score(is_empty, p_empty),
            "max_pixel": roc_auc_score(is_empty, -probs.reshape(len(val), -1).max(1)),
        },
        "min_area_rule": tuned(val.masks, probs),
        "best_gate": {"gate": float(best), **gates[best]},
        "gates": {g: v["score"] for g, v in gates.items()},
        "date": datetime.date.today().isoformat(),
    }
    write_result("empty_gate", result, args.out, quiet=True)
    print(json.dumps({k: result[k] for k in ("auc_empty", "gates")}))
    print("rule", result["min_area_rule"]["score"], "gate", best, gates[best]["score"])


if __name__ == "__main__":
    main()
