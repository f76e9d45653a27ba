"""Time the default DAG from a fresh copy of the workflow; write bench/default_dag.json.

Usage: python bench/default_dag.py [--cores N] [--config KEY=VALUE ...]
Runs `snakemake` (the default target: submission and summary) in a temporary copy of the
workflow and src/ (nothing in results/ is reused), then records the wall time, each rule's
summed run time from its benchmark files, the summary table and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine() -> dict:
    """The machine and library versions a number was measured with."""
    import torch

    from saltseg.runtime.device import cpu_has_amx

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2 / AVX512: speed differs
        "cpu_amx": cpu_has_amx(),  # bf16 matrix tiles: amp auto turns bf16 on
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ["torch", "timm", "snakemake", "numpy", "saltseg"]},
        "commit": _commit(),
    }


def write_result(path: str | Path, result: dict) -> None:
    """Write a bench result as indented JSON, stamped with the machine and date, and print it."""
    result = {**result, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def rule_seconds(benchmarks: Path) -> dict[str, float]:
    """Seconds per rule, summed over its jobs' Snakemake benchmark files."""
    rules: dict[str, float] = {}
    for tsv in benchmarks.rglob("*.tsv"):
        rule = tsv.parent.name
        rules[rule] = rules.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].sum())
    return {k: round(v, 1) for k, v in sorted(rules.items())}


def _commit() -> str | None:
    """The checked-out commit, with ``-dirty`` when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    if not head:
        return None
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--config", nargs="*", default=[])
    parser.add_argument("--out", default=str(REPO / "bench" / "default_dag.json"))
    args = parser.parse_args()
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
        "command": " ".join(command),
        "wall_seconds": round(wall, 1),
        "rule_seconds": rules,
        "summary": summary,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
