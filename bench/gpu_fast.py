"""Collect what the fast profile's DAG run of bench/gpu_check.sh measured into one JSON.

Usage: python -m bench gpu_fast --results results --samples gpu_samples.csv --rc RC \
    --start EPOCH_S --dag-start EPOCH_S --data-dir DATA --out gpu_fast.json

Holds: the wall time (whole command and the DAG alone), snakemake's exit status and which
targets it reached, seconds per rule, the GPU busy share (nvidia-smi samples taken while the DAG
ran), train images/s per model (each fold job's median epoch, and their sum: the folds train
side by side), OOF per model, stage and blend (at 0.5, tuned, post-processed), the test tiles
predicted, and the wall time extrapolated to all 18,600 test tiles. The extrapolation assumes
that each job whose work grows with the test tiles (predict, merge_folds, ensemble, pseudo_fold,
blend, mosaic, postprocess, submission) takes time in proportion to the tiles it reads, and that
a stage's fold predictions run side by side (so the stage waits for its slowest).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bench.common import rule_seconds, write_result

ALL_TEST_TILES = 18_600
#: rules whose work grows with the test tiles; predict's also holds the fold's OOF tiles
TEST_RULES = ("merge_folds", "ensemble", "pseudo_fold", "blend", "postprocess", "submission")


def busy_share(samples: Path) -> dict | None:
    """Mean, median and share of samples above 50 % of nvidia-smi's utilization.gpu."""
    if not samples.is_file() or not samples.stat().st_size:
        return None
    frame = pd.read_csv(samples, header=None, names=["time", "busy", "memory_mib"])
    busy = pd.to_numeric(frame["busy"], errors="coerce").dropna()
    return {
        "samples": int(len(busy)),
        "mean_percent": round(float(busy.mean()), 1),
        "median_percent": float(busy.median()),
        "share_over_50_percent": round(float((busy > 50).mean()), 3),
        "peak_memory_mib": float(pd.to_numeric(frame["memory_mib"], errors="coerce").max()),
    }


def train_speed(results: Path) -> dict[str, dict]:
    """Per stage/model: each fold's median images/s over its epochs after the first, their sum."""
    speeds: dict[str, dict] = {}
    for history in sorted(results.glob("stage*/*/fold*/history.csv")):
        rows = pd.read_csv(history)
        steady = rows["images_per_s"].iloc[1:] if len(rows) > 1 else rows["images_per_s"]
        key = f"{history.parts[-4]}/{history.parts[-3]}"
        fold = history.parts[-2]
        speeds.setdefault(key, {"per_fold": {}})["per_fold"][fold] = round(float(steady.median()))
    for entry in speeds.values():
        entry["sum"] = sum(entry["per_fold"].values())
    return speeds


def extrapolated_wall(
    results: Path, wall: float, n_train: int, n_test: int, n_oof: int
) -> float | None:
    """The DAG's wall seconds with all 18,600 test tiles (see the module docstring)."""
    if not n_test:
        return None
    benchmarks = results / "benchmarks"
    extra = 0.0
    ratio_test = ALL_TEST_TILES / n_test
    predict: dict[str, float] = {}
    for tsv in (benchmarks / "predict").glob("*.tsv"):
        stage_model = tsv.stem.rsplit("_fold", 1)[0]
        seconds = float(pd.read_csv(tsv, sep="\t")["s"].sum())
        predict[stage_model] = max(predict.get(stage_model, 0.0), seconds)
    ratio_predict = (ALL_TEST_TILES + n_oof) / (n_test + n_oof)
    extra += sum(s * (ratio_predict - 1) for s in predict.values())
    seconds = rule_seconds(benchmarks)
    extra += sum(seconds.get(rule, 0.0) * (ratio_test - 1) for rule in TEST_RULES)
    ratio_tiles = (n_train + ALL_TEST_TILES) / (n_train + n_test)  # the mosaic reads every tile
    extra += seconds.get("mosaic", 0.0) * (ratio_tiles - 1)
    return round(wall + extra, 1)


def oof_table(results: Path) -> list[dict]:
    """results/summary.csv (every model, stage ensemble and the blend), or the cv.json files
    reached when the run stopped before the summary."""
    summary = results / "summary.csv"
    if summary.is_file():
        table = pd.read_csv(summary)
        return table.astype(object).where(table.notna(), None).to_dict(orient="records")
    rows = []
    for cv in sorted(results.glob("*/*/cv.json")):
        rows.append({"name": f"{cv.parts[-3]}/{cv.parts[-2]}", **json.loads(cv.read_text())})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--samples", required=True, help="nvidia-smi samples (CSV)")
    parser.add_argument("--rc", type=int, required=True, help="snakemake's exit status")
    parser.add_argument("--start", type=float, required=True, help="the command's start (epoch s)")
    parser.add_argument("--dag-start", type=float, required=True, help="snakemake's start")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results, now = Path(args.results), time.time()
    data = Path(args.data_dir)
    n_test = len(pd.read_csv(data / "sample_submission.csv"))
    n_train = len(pd.read_csv(data / "train.csv"))
    folds = results / "folds.csv"
    n_oof = n_train // max(int(pd.read_csv(folds)["fold"].nunique()), 1) if folds.is_file() else 0
    dag_wall = round(now - args.dag_start, 1)
    reached = [t for t in ("submission", "summary") if (results / f"{t}.csv").is_file()]
    write_result(
        "gpu_fast",
        {
            "command": "bash bench/gpu_check.sh run",
            "profile": "workflow/profiles/fast cut by python -m bench gpu_check overrides",
            "snakemake_exit_status": args.rc,
            "reached": {
                "submission": (results / "submission.csv").is_file(),
                "summary": (results / "summary.csv").is_file(),
            },
            "wall_seconds": round(now - args.start, 1),
            "dag_wall_seconds": dag_wall,
            "train_tiles": n_train,
            "test_tiles": n_test,
            "test_subset": f"the first {n_test} ids of sample_submission.csv",
            "dag_wall_seconds_at_18600_test_tiles": extrapolated_wall(
                results, dag_wall, n_train, n_test, n_oof
            ),
            "rule_seconds": rule_seconds(results / "benchmarks"),
            "gpu_busy": busy_share(Path(args.samples)),
            "train_images_per_s": train_speed(results),
            "oof": oof_table(results),
        },
        args.out,
        headline=f"fast DAG: snakemake exit {args.rc} after {dag_wall:.0f} s, "
        f"reached {' and '.join(reached) or 'neither submission nor summary'}",
    )


if __name__ == "__main__":
    main()
