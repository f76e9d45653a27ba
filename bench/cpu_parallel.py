"""Training images/s of the `cpu` profile's network: one job on all threads, or several
single-thread jobs side by side (cpu_parallel.json).

Usage: python -m bench cpu_parallel [--threads 2] [--jobs 2,3] [--steps 40]

Each job is a separate process timing saltseg's training step (bench/common.py's
``time_setting``, as cpu_speed does) on the `cpu` profile's model at batch 16.
``total_images_per_s`` adds the jobs that ran at the same time: the throughput of folds trained
in parallel.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.common import REPO, write_result

SETTING = {"batch_size": 16, "model": {"empty_head": True}}
JOB = """
import json, torch
from bench.common import time_setting
torch.set_num_threads({threads})
print(json.dumps(time_setting({setting!r}, {steps})))
"""


def run_jobs(n: int, threads: int, steps: int) -> list[float]:
    """Start ``n`` jobs of ``threads`` threads at once; their training images/s."""
    code = JOB.format(threads=threads, setting=SETTING, steps=steps)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(n)
    ]
    outs = [p.communicate()[0] for p in procs]
    return [json.loads(out.strip().splitlines()[-1])["train_images_per_s"] for out in outs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="cores of the machine")
    parser.add_argument("--jobs", default="2,3", help="single-thread jobs side by side")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    rows = {}
    one = run_jobs(1, args.threads, args.steps)
    rows[f"1 job x {args.threads} threads"] = {"jobs": one, "total_images_per_s": sum(one)}
    for n in map(int, args.jobs.split(",")):
        rates = run_jobs(n, 1, args.steps)
        rows[f"{n} jobs x 1 thread"] = {
            "jobs": rates,
            "total_images_per_s": round(sum(rates), 1),
            "gain": round(sum(rates) / sum(one), 3),
        }
        print(n, rows[f"{n} jobs x 1 thread"], flush=True)
    write_result(
        "cpu_parallel",
        {
            "setting": SETTING,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
