"""Run the `cpu` profile on real data; record OOF per stage and wall time (quality-cpu.json).

Usage: python bench/quality_cpu.py --data-dir ../shared/tgs [--workdir DIR] [--out PATH]
Runs `snakemake --workflow-profile workflow/profiles/cpu` in ``--workdir`` (default: this
checkout; use a fresh clone so the numbers come from committed code). Rerunning after an
interruption continues the run; the JSON then holds the wall time of each attempt. The result
holds the OOF of every stage (tuned, per coverage bucket), the post-processed blend, the wall
time of each rule, the fold-0 ablation table behind the recipe (bench/ablation_cpu.json), and
how fast the machine was: the same machine has trained 2.2x slower one day than the next, and the
budgets in minutes then buy half the epochs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_speed import SETTINGS, time_setting  # noqa: E402  (bench/ is no package)
from default_dag import rule_seconds, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workdir", default=str(REPO))
    parser.add_argument("--cores", help="default: the profile's (3 single-thread jobs)")
    parser.add_argument("--out", default=str(REPO / "bench" / "quality-cpu.json"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    data_dir = str(Path(args.data_dir).resolve())
    command = ["snakemake", "--workflow-profile", "workflow/profiles/cpu"]
    command += ["--cores", args.cores] if args.cores else []
    command += ["--config", f"data_dir={data_dir}"]
    speeds = append_record(workdir / "results" / "quality_cpu_speeds.json", machine_speed())
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir)
    seconds = round(time.perf_counter() - start, 1)
    attempts = append_record(workdir / "results" / "quality_cpu_attempts.json", seconds)
    if result.returncode:
        sys.exit(f"snakemake failed (exit {result.returncode}); rerun this command to continue")
    table = pd.read_csv(workdir / "results" / "summary.csv")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True
    ).stdout.strip()
    write_result(
        args.out,
        {
            "command": " ".join(command[:-2] + ["--config", "data_dir=DATA"]),
            "commit": commit,
            "wall_seconds": round(sum(attempts), 1),
            "wall_seconds_per_attempt": attempts,
            "machine_speed_per_attempt": speeds,
            "rule_seconds": rule_seconds(workdir / "results" / "benchmarks"),
            "summary": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
            "postprocess": json.loads(
                (workdir / "results" / "postprocess" / "report.json").read_text()
            ),
            "ablation": ablation_table(REPO / "bench" / "ablation_cpu.json"),
            "recipe": (workdir / "workflow/profiles/cpu/recipe.yaml").read_text(),
        },
    )


def append_record(path: Path, value: object) -> list:
    """Append ``value`` to the JSON list at ``path`` (kept across attempts); the whole list."""
    records = json.loads(path.read_text()) if path.is_file() else []
    records.append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return records


def machine_speed(steps: int = 40) -> dict:
    """cpu_speed.py's ``bs16`` training rate on 2 threads now (about 20 s), and its ratio to the
    rate recorded in bench/cpu_speed.json: below 1, this machine is slower than on that day."""
    torch.set_num_threads(2)
    rate = time_setting(SETTINGS["bs16"], steps)["train_images_per_s"]
    recorded = json.loads((REPO / "bench" / "cpu_speed.json").read_text())
    reference = recorded["settings"]["bs16"]["train_images_per_s"]
    return {
        "train_images_per_s": rate,
        "of_cpu_speed_json": round(rate / reference, 2),
        "cpu_speed_json_date": recorded["date"],
    }


def ablation_table(path: Path) -> list[dict] | None:
    """Lever, fold-0 score (tuned threshold and min area, with and without flip TTA), minutes."""
    if not path.is_file():
        return None
    return [
        {
            "variant": row["variant"],
            "lever": row["lever"],
            "oof_fold0": round(row["scores"]["none"]["tuned_min_area"], 4),
            "oof_fold0_flip_tta": round(row["scores"]["none+hflip"]["tuned_min_area"], 4),
            "train_minutes": row["train_minutes"],
            "epochs": row["epochs"],
        }
        for row in json.loads(path.read_text())["rows"]
    ]


if __name__ == "__main__":
    main()
