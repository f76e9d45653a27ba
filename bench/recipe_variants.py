"""What each lever of the later stages is worth on the default config (recipe_variants).

Usage: python -m bench recipe_variants --results results \
           --variant no_pseudo=bench/experiments/no_pseudo.yaml \
           --variant ensemble_teacher='pseudo={"teacher": "ensemble"}'

Each variant reruns stages 2 and 3, the blend and the summary of a finished default run
(``snakemake all``) with one change, from the same stage 1: a copy of the workflow and src/
gets the run's synthetic data, folds and stage-1 results, ``snakemake --touch stage1`` marks
them done, and ``snakemake results/summary.csv`` runs the rest with ``--configfile`` (a YAML
file) or ``--config`` (KEY=VALUE). The record holds each variant's summary table, OOF and
test-truth scores per stage, and its wall time, beside the run's own summary.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import REPO, copy_workflow, speed_probe, write_result

COLUMNS = [
    "stage",
    "name",
    "oof_at_0.5",
    "oof_tuned",
    "score_1_to_10pct",
    "test_tuned",
    "test_1_to_10pct",
    "test_submission",
]


def table(summary_csv: Path) -> list[dict]:
    """The summary's scores, one record per row."""
    frame = pd.read_csv(summary_csv)
    frame = frame[[c for c in COLUMNS if c in frame]]
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def run_variant(results: Path, change: str) -> tuple[list[dict], float]:
    """Rerun everything after stage 1 of ``results`` with ``change``; its summary and seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_workflow(work)
        for name in ["data", "stage1"]:
            shutil.copytree(results / name, work / "results" / name)
        shutil.copy(results / "folds.csv", work / "results")
        if "=" in change:
            option = ["--config", change]
        else:
            option = ["--configfile", str(Path(change).resolve())]
        subprocess.run(
            ["snakemake", "--touch", "stage1"], cwd=work, check=True, capture_output=True
        )
        start = time.perf_counter()
        command = ["snakemake", *option, "--", "results/summary.csv"]
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        return table(work / "results" / "summary.csv"), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(REPO / "results"), help="a finished run's")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=FILE.yaml or NAME=KEY=VALUE (a --config value); repeat for several",
    )
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    results = Path(args.results)
    speed = speed_probe()
    variants = {"default (this run)": {"summary": table(results / "summary.csv")}}
    for spec in args.variant:
        name, change = spec.split("=", 1)
        summary, seconds = run_variant(results, change)
        variants[name] = {"change": change, "summary": summary, "seconds": round(seconds, 1)}
    blends = {
        name: next(row for row in v["summary"] if row["stage"] == "blend")
        for name, v in variants.items()
    }
    headline = "; ".join(
        f"{name}: blend OOF {row['oof_tuned']:.3f}, test {row['test_tuned']:.3f}"
        for name, row in blends.items()
    )
    write_result(
        "recipe_variants", {"variants": variants}, args.out, speed=speed, headline=headline
    )


if __name__ == "__main__":
    main()
