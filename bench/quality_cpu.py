"""Run the `cpu` profile on real data; record OOF per stage and wall time (quality-cpu.json).

Usage: python -m bench quality_cpu --data-dir ../shared/tgs [--workdir DIR] [--out PATH]
Runs `snakemake --workflow-profile workflow/profiles/cpu` in ``--workdir`` (default: this
checkout; use a fresh clone so the numbers come from committed code). Rerunning after an
interruption continues the run; the JSON then holds the wall time of each attempt. The result
holds the OOF of every stage (tuned, per coverage bucket), the post-processed blend, the wall
time of each rule, the recipe it ran, and how fast the machine was: the same machine has trained
2.2x slower one day than the next, and the budgets in minutes then buy half the epochs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.common import REPO, commit, rule_seconds, speed_probe, write_result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workdir", default=str(REPO))
    parser.add_argument("--cores", help="default: the profile's (3 single-thread jobs)")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    data_dir = str(Path(args.data_dir).resolve())
    command = ["snakemake", "--workflow-profile", "workflow/profiles/cpu"]
    command += ["--cores", args.cores] if args.cores else []
    command += ["--config", f"data_dir={data_dir}"]
    speeds = append_record(workdir / "results" / "quality_cpu_speeds.json", speed_probe())
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir)
    seconds = round(time.perf_counter() - start, 1)
    attempts = append_record(workdir / "results" / "quality_cpu_attempts.json", seconds)
    if result.returncode:
        sys.exit(f"snakemake failed (exit {result.returncode}); rerun this command to continue")
    table = pd.read_csv(workdir / "results" / "summary.csv")
    post = json.loads((workdir / "results" / "postprocess" / "report.json").read_text())
    write_result(
        "quality_cpu",
        {
            "command": "python -m bench quality_cpu --data-dir DATA",
            "snakemake": " ".join(command[:-2] + ["--config", "data_dir=DATA"]),
            "workdir_commit": commit(workdir),
            "wall_seconds": round(sum(attempts), 1),
            "wall_seconds_per_attempt": attempts,
            "machine_speed_per_attempt": speeds,
            "rule_seconds": rule_seconds(workdir / "results" / "benchmarks"),
            "summary": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
            "postprocess": post,
            "recipe": (workdir / "workflow/profiles/cpu/recipe.yaml").read_text(),
        },
        args.out,
        speed=speeds[-1],
        headline=f"{sum(attempts) / 60:.1f} min; OOF {post['oof_before']:.3f} tuned, "
        f"{post['oof_after']:.4f} post-processed",
    )


def append_record(path: Path, value: object) -> list:
    """Append ``value`` to the JSON list at ``path`` (kept across attempts); the whole list."""
    records = json.loads(path.read_text()) if path.is_file() else []
    records.append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return records


if __name__ == "__main__":
    main()
