"""How good are the pseudo-labels of each selection, by coverage bucket? (pseudo_quality)

Usage: python -m bench pseudo_quality --results results

``--results``: a finished default run on the synthetic data (``snakemake all``), whose
``solution.csv`` holds the test truth. Every selection of saltseg.pseudo is applied as the
pipeline applies it, to the test maps of each teacher: the fold-k stage-1 models (their cut
tuned on the other folds' OOF, as ``pseudo_fold``) and the stage-1 ensemble (its cv.json's
cut, as ``pseudo``), and the kept labels are scored against the truth: the share kept, the
metric of the kept labels, the share of empty tiles among them, and the same per coverage
bucket. bench/stages_pay.py reports the same for its own teacher on real fold 0 (the
``--data-dir`` mode that did it for a fold-0 ablation teacher retired with bench/ablation_cpu.py:
run it at 6362cd7).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.common import REPO, write_result
from saltseg import layout
from saltseg import probs as probs_io
from saltseg.binarize import Cut, binarize
from saltseg.data import kaggle
from saltseg.data.folds import read_folds
from saltseg.metrics import bucket_scores, competition_metric, coverage_bucket, tile_scores
from saltseg.pseudo import empty_share, select_balanced, select_confident, select_phalanx
from saltseg.steps.labels import teacher_cut


def selections(
    probs: np.ndarray, masks: np.ndarray, blank: np.ndarray, empty_share: float
) -> dict[str, np.ndarray]:
    """The tiles each selection keeps of maps ``probs`` (``masks``: at the teacher's cut)."""
    chosen = {
        "teacher (every non-blank tile)": np.flatnonzero(~blank),
        "confident_0.9 (b.e.s.)": select_confident(probs, blank, 5, 0, 0.9)["index"],
        "confident_0.97": select_confident(probs, blank, 5, 0, 0.97)["index"],
        "phalanx": select_phalanx(probs, blank, 5, 0)["index"],
    }
    for level in (0.8, 0.9):
        table = select_balanced(probs, masks, blank, empty_share, 5, 0, level)
        chosen[f"balanced_{level}"] = table["index"]
    return {name: np.asarray(index, int) for name, index in chosen.items()}


def quality(
    truth: np.ndarray, images: np.ndarray, probs: np.ndarray, cut: Cut, empty_share: float
) -> dict[str, dict]:
    """:func:`describe` of every selection of the teacher's maps ``probs`` at ``cut``."""
    masks = binarize(probs, images, cut)
    chosen = selections(probs, masks, kaggle.is_blank(images), empty_share)
    return {name: describe(truth, masks, keep) for name, keep in chosen.items()}


def synthetic_truth(results: Path) -> dict:
    """Every selection of each stage-1 teacher of a finished synthetic run, against the truth."""
    data = results / "data" / "synthetic"
    train, test = kaggle.load_train(data, 101), kaggle.load_test(data, 101)
    truth = kaggle.load_test_truth(data, 101)[1]
    share = empty_share(train.masks, kaggle.is_blank(train.images))
    models = sorted(p.name for p in (results / "stage1").iterdir() if p.name != "ensemble")
    n_folds = len(list((results / "stage1" / models[0]).glob("fold*")))
    folds = read_folds(results / "folds.csv", n_folds)

    def maps(paths: list[Path]) -> np.ndarray:
        total = sum(probs_io.read_probs(p)[1] for p in paths) / len(paths)
        return probs_io.align(paths[0], test.ids, probs_io.read_ids(paths[0]), total)

    teachers = {}
    for fold in range(n_folds):
        others = [
            layout.fold_file("stage1", m, f, "oof.parquet")
            for m in models
            for f in range(n_folds)
            if f != fold
        ]
        cut, _ = teacher_cut(train, None, [str(results.parent / p) for p in others])
        fold_maps = maps(
            [results.parent / layout.fold_file("stage1", m, fold, "test.parquet") for m in models]
        )
        teachers[f"fold{fold}"] = quality(truth, test.images, fold_maps, cut, share)
    ensemble = results.parent / layout.ensemble_file("stage1", "test.parquet")
    cut = Cut.read(ensemble.with_name("cv.json"))
    teachers["ensemble"] = quality(truth, test.images, maps([ensemble]), cut, share)
    return {
        "n_test_tiles": len(test),
        "n_folds": int(folds["fold"].nunique()),
        "labelled_empty_share": round(share, 3),
        "teachers": teachers,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", default=str(REPO / "results"), help="a finished synthetic run's results/"
    )
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    truth = synthetic_truth(Path(args.results))
    kept = [
        f"{name.split(' ')[0]} keeps {s['share_kept']:.1%}"
        + (f" at {s['label_metric']:.3f}" if "label_metric" in s else "")
        for name, s in truth["teachers"]["fold0"].items()
    ]
    write_result(
        "pseudo_quality",
        {
            "command": "python -m bench pseudo_quality --results results",
            "synthetic_test_truth": truth,
        },
        args.out,
        headline="fold-0 teacher: " + "; ".join(kept),
    )


def describe(truth: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> dict:
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
