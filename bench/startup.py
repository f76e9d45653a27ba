"""Startup seconds of each `saltseg` subcommand: what a job imports before it works (startup.json).

Usage: python -m bench startup [--repeats 3]

For every subcommand, a fresh interpreter imports what that subcommand imports (the CLI, then the
step it runs) and reports the seconds and whether torch, timm or albumentations came with it.
The median of ``--repeats`` runs is kept. Jobs that only read and write parquet/CSV or draw plots
should not import the deep-learning stack.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from bench.common import REPO, write_result

#: subcommand -> the import statement its code path runs after the CLI module
IMPORTS = {
    "synth": "from saltseg.data.synthetic import generate",
    "folds": "from saltseg import steps; steps.folds",
    "train": "from saltseg import steps; steps.train",
    "predict": "from saltseg import steps; steps.predict",
    "merge": "from saltseg import steps; steps.merge",
    "ensemble": "from saltseg import steps; steps.ensemble",
    "pseudo": "from saltseg import steps; steps.pseudo_labels",
    "mosaic": "from saltseg import steps; steps.mosaic",
    "postprocess": "from saltseg import steps; steps.postprocess",
    "submit": "from saltseg import steps; steps.submit",
    "summary": "from saltseg import steps; steps.summary",
    "plot-*": "from saltseg import report; from saltseg.binarize import resolve_cut",
    "predict-section": "from saltseg.sections.predict import predict_section",
}
PROBE = """
import sys, time
start = time.perf_counter()
import saltseg.cli
{statement}
seconds = time.perf_counter() - start
heavy = [m for m in ("torch", "timm", "albumentations") if m in sys.modules]
print(seconds, ",".join(heavy))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(IMPORTS), help="subcommands (comma list)")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    rows = {}
    for command in args.only.split(","):
        statement = IMPORTS[command]
        runs, heavy = [], ""
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, "-c", PROBE.format(statement=statement)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            ).stdout.split()
            runs.append(float(out[0]))
            heavy = out[1] if len(out) > 1 else ""
        rows[command] = {
            "import_seconds": round(statistics.median(runs), 2),
            "imports": heavy.split(",") if heavy else [],
        }
        print(command, rows[command], flush=True)
    seconds = [row["import_seconds"] for row in rows.values()]
    write_result(
        "startup",
        {"repeats": args.repeats, "subcommands": rows},
        args.out,
        headline=f"import {min(seconds):g}-{max(seconds):g} s per subcommand",
    )


if __name__ == "__main__":
    main()
