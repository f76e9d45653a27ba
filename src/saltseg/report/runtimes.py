"""Run time per rule, from Snakemake ``benchmark:`` files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saltseg.errors import InputError
from saltseg.report.figure import new_figure, save_figure


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d} min"


def plot_rule_runtimes(benchmarks: list[str | Path], out_png: str | Path) -> dict[str, float]:
    """Draw total wall-clock seconds per rule from Snakemake ``benchmark:`` files.

    ``benchmarks`` are ``<rule>/<job>.tsv`` files (column ``s``); a file with several rows
    (``repeat()``) counts its mean, and a rule's total is the sum over its jobs (files).

    Returns:
        rule -> total seconds.

    Raises:
        InputError: no benchmark files, or one without a numeric ``s`` column.
    """
    files = [Path(f) for f in benchmarks]
    if not files:
        raise InputError("benchmarks", "expected benchmark files <rule>/<job>.tsv, got none")
    totals: dict[str, float] = {}
    jobs: dict[str, int] = {}
    for path in files:
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise InputError(path, f"expected a Snakemake benchmark TSV ({err})") from None
        seconds = pd.to_numeric(frame.get("s", pd.Series(dtype=float)), errors="coerce")
        if seconds.dropna().empty:
            raise InputError(path, "expected a numeric column 's' (seconds)")
        rule = path.parent.name
        totals[rule] = totals.get(rule, 0.0) + float(seconds.mean())
        jobs[rule] = jobs.get(rule, 0) + 1
    rules = sorted(totals, key=lambda r: (totals[r], r))  # largest ends on top
    fig = new_figure(9, 0.42 * len(rules) + 1.6)
    ax = fig.subplots()
    values = [totals[r] for r in rules]
    bars = ax.barh(rules, values, color="C0")
    labels = [f"{_duration(totals[r])} ({jobs[r]} job{'s' * (jobs[r] > 1)})" for r in rules]
    ax.bar_label(bars, labels=labels, padding=4, fontsize=9)
    ax.set_xlim(0, max(values) * 1.3 or 1)
    ax.set_xlabel("wall-clock seconds, summed over the rule's jobs")
    ax.grid(axis="x", alpha=0.3)
    total = sum(values)
    ax.set_title(f"Run time per rule: {_duration(total)} over {sum(jobs.values())} jobs")
    save_figure(fig, out_png)
    return {r: totals[r] for r in reversed(rules)}
