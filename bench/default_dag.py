"""Time the default DAG from a fresh copy of the workflow (default_dag.json).

Usage: python -m bench default_dag [--cores N] [--config KEY=VALUE ...]
Runs `snakemake` (the default target: submission and summary) in a temporary copy of the
workflow and src/ (nothing in results/ is reused), then records the wall time, each rule's
summed run time from its benchmark files, the summary table and the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import REPO, rule_seconds, write_result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--config", nargs="*", default=[])
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ["Snakefile", "config.yaml"]:
            shutil.copy(REPO / name, work)
        for name in ["workflow", "envs", "src"]:
            shutil.copytree(REPO / name, work / name)
        (work / "profiles").symlink_to("workflow/profiles")
        command = ["snakemake", "--cores", args.cores]
        if args.config:
            command += ["--config", *args.config]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        wall = time.perf_counter() - start
        rules = rule_seconds(work / "results/benchmarks")
        table = pd.read_csv(work / "results/summary.csv")
        summary = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    result = {
        "snakemake": " ".join(command),
        "wall_seconds": round(wall, 1),
        "rule_seconds": rules,
        "summary": summary,
    }
    write_result("default_dag", result, args.out)


if __name__ == "__main__":
    main()
