"""Time the default DAG from a fresh copy of the workflow (default_dag.json).

Usage: python -m bench default_dag [--cores N] [--config KEY=VALUE ...]
Runs `snakemake` (the default target: submission and summary) in a temporary copy of the
workflow and src/ (nothing in results/ is reused), then records the wall time, each rule's
summed run time from its benchmark files, the summary table and the machine. The speed probe
(bench.common.speed_probe, about 20 s) runs before the DAG (the header's ``speed_probe``) and
after it (``speed_probe_after``): a wall time scales about as 1/probe, so
``wall_seconds_at_probe_1`` (wall time x the mean probe) compares runs on different machines.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import copy_workflow, rule_seconds, speed_probe, write_result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--config", nargs="*", default=[])
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    before = speed_probe()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_workflow(work)
        command = ["snakemake", "--cores", args.cores]
        if args.config:
            command += ["--config", *args.config]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        wall = time.perf_counter() - start
        rules = rule_seconds(work / "results/benchmarks")
        table = pd.read_csv(work / "results/summary.csv")
        summary = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    after = speed_probe()
    probe = (before["of_cpu_speed_json"] + after["of_cpu_speed_json"]) / 2
    result = {
        "snakemake": " ".join(command),
        "wall_seconds": round(wall, 1),
        "speed_probe_after": after,
        "wall_seconds_at_probe_1": round(wall * probe, 1),
        "rule_seconds": rules,
        "summary": summary,
    }
    headline = f"{wall:,.0f} s ({wall * probe:,.0f} s at probe 1); {tuned_oof(summary)}"
    write_result("default_dag", result, args.out, speed=before, headline=headline)


def tuned_oof(summary: list[dict]) -> str:
    """The tuned OOF of each stage (its ensemble where it has one), the blend's post-processed."""
    rows: dict[str, dict] = {}
    for row in summary:
        if row["stage"] not in rows or row["name"] == "ensemble":
            rows[row["stage"]] = row
    scores = [f"{stage} {row['oof_tuned']:.3f}" for stage, row in rows.items()]
    post = rows.get("blend", {}).get("oof_postprocessed")
    return "tuned OOF " + ", ".join(scores) + (f", post-processed {post:.4f}" if post else "")


if __name__ == "__main__":
    main()
