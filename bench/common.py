"""The benchmarks' shared helpers: machine and commit, the training-speed timer and the speed
probe built on it, rule seconds, and :func:`write_result`, which writes one shared header,
never overwrites a result and appends the result's row to the records index.

A result is ``{"bench", "date", "commit", "machine", ["speed_probe",] "command", ["headline",]
...payload}``, written once to ``bench/records/<bench>-<YYYY-MM-DD>.json`` (``-2``, ``-3``, ...
when that day already has one) or to an explicit ``--out`` path that must not exist yet. Results
are cited by name in docs/, so a file, once written, is never rewritten: a rerun makes a new one.

This module imports only bench.table (the index), which imports no other module of the package,
so ``bench`` has no import cycle; torch and saltseg are imported inside the functions that need
them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from bench.table import INDEX, RECORDS, append

REPO = Path(__file__).resolve().parents[1]
# The network and settings that bench/cpu_speed.py times; bs16 is also the speed probe.
SPEED = yaml.safe_load((REPO / "bench" / "experiments" / "cpu_speed.yaml").read_text())
SPEED_MODEL, SPEED_SETTINGS = SPEED["model"], SPEED["settings"]
SPEED_REFERENCE = RECORDS / "cpu_speed.json"  # the probe's 1.0: bs16, 2 threads, 2026-11-30


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
    }


def commit(cwd: str | Path = REPO) -> str:
    """The checked-out commit of ``cwd``, with ``-dirty`` when tracked files differ from it;
    "unknown" where git is missing or ``cwd`` is not a checkout (the result is written anyway)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
        return done.stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def time_setting(
    setting: dict, steps: int, warmup: int = 5, tiles: int = 512, net: dict | None = None
) -> dict:
    """Training images/s and prediction tiles/s (flip TTA) of a U-Net with one setting of
    bench/experiments/cpu_speed.yaml: saltseg's own training step and prediction on random
    101x101 tiles, after ``warmup`` untimed steps (their seconds are reported apart). The net is
    ``net`` (model settings), else ``SPEED_MODEL`` with the setting's ``model`` overrides."""
    import numpy as np
    import torch

    from saltseg.inference.predict import predict_probs
    from saltseg.losses import build_loss
    from saltseg.models import build_model
    from saltseg.runtime.device import resolve_runtime
    from saltseg.training.loop import train_step

    runtime = resolve_runtime(
        "cpu",
        setting.get("amp", "false"),
        setting.get("channels_last", "auto"),
        compile=setting.get("compile", False),
    )
    torch.manual_seed(0)
    model = build_model("unet", 101, **(net or {**SPEED_MODEL, **setting.get("model", {})}))
    model = model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if runtime.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler, loss_fn = runtime.grad_scaler(), build_loss("bce_dice")
    bs = setting["batch_size"]
    x = runtime.to(torch.rand(bs, 1, 101, 101))
    y = (torch.rand(bs, 1, 101, 101) > 0.7).float()
    model.train()
    start = time.perf_counter()
    for _ in range(warmup):
        train_step(forward, x, y, loss_fn, optimizer, scaler, runtime)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        train_step(forward, x, y, loss_fn, optimizer, scaler, runtime)
    train_rate = steps * bs / (time.perf_counter() - start)
    images = np.random.default_rng(0).integers(0, 255, (tiles, 101, 101), dtype=np.uint8)
    predict_probs(model, images[:64], runtime, 128)
    start = time.perf_counter()
    predict_probs(model, images, runtime, 128, ("none", "hflip"))
    predict_rate = len(images) / (time.perf_counter() - start)
    return {
        "train_images_per_s": round(train_rate, 1),
        "predict_tiles_per_s_flip_tta": round(predict_rate, 1),
        "warmup_seconds": round(warm, 1),
    }


def speed_probe(steps: int = 40) -> dict:
    """How fast this machine trains now: the ``bs16`` rate of :func:`time_setting` on 2 threads
    (about 20 s), and its ratio to the rate in bench/records/cpu_speed.json (below 1: slower
    than on that day; wall times scale about as 1/ratio)."""
    import torch

    torch.set_num_threads(2)
    rate = time_setting(SPEED_SETTINGS["bs16"], steps)["train_images_per_s"]
    recorded = json.loads(SPEED_REFERENCE.read_text())
    reference = recorded["settings"]["bs16"]["train_images_per_s"]
    return {
        "train_images_per_s": rate,
        "of_cpu_speed_json": round(rate / reference, 2),
        "cpu_speed_json_date": recorded["date"],
    }


def copy_workflow(work: Path) -> None:
    """A runnable copy of this checkout's workflow in ``work``: Snakefile, config.yaml,
    workflow/, envs/, src/ (the jobs run it) and the profiles link; no results."""
    for name in ["Snakefile", "config.yaml"]:
        shutil.copy(REPO / name, work)
    for name in ["workflow", "envs", "src"]:
        shutil.copytree(REPO / name, work / name)
    (work / "profiles").symlink_to("workflow/profiles")


def rule_seconds(benchmarks: Path) -> dict[str, float]:
    """Seconds per rule, summed over its jobs' Snakemake benchmark files."""
    import pandas as pd

    rules: dict[str, float] = {}
    for tsv in Path(benchmarks).rglob("*.tsv"):
        rule = tsv.parent.name
        rules[rule] = rules.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].sum())
    return {k: round(v, 1) for k, v in sorted(rules.items())}


def result_path(bench: str, results: Path = RECORDS, date: str | None = None) -> Path:
    """The first free ``<results>/<bench>-<date>[-N].json`` (N = 2, 3, ...)."""
    stem = f"{bench}-{date or time.strftime('%Y-%m-%d')}"
    path, n = results / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = results / f"{stem}-{n}.json"
    return path


def command_line(bench: str, argv: list[str] | None = None) -> str:
    """``python -m bench NAME ARGS``: how the result was made (``argv``: the bench's arguments)."""
    return shlex.join(["python", "-m", "bench", bench, *(sys.argv[1:] if argv is None else argv)])


def write_result(
    bench: str,
    payload: dict,
    out: str | Path | None = None,
    *,
    command: str | None = None,
    speed: dict | None = None,
    headline: str | None = None,
    quiet: bool = False,
) -> Path:
    """Write ``payload`` under the shared header to ``out`` (default :func:`result_path`), print
    it, and return the path; a result in bench/records/ gets its row in the index,
    bench/README.md. Refuses (FileExistsError) to overwrite a file: results are immutable.

    A ``"command"`` key of ``payload`` (a command line with private paths replaced) wins over
    ``command``, which defaults to :func:`command_line`; ``speed`` is a :func:`speed_probe`;
    ``headline`` is the bench's one line on what it measured, its row's last cell.
    """
    payload = dict(payload)
    header = {
        "bench": bench,
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "machine": machine(),
    }
    if speed is not None:
        header["speed_probe"] = speed
    header["command"] = payload.pop("command", None) or command or command_line(bench)
    if headline:
        header["headline"] = headline
    result = {**header, **payload}
    path = Path(out) if out else result_path(bench)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    try:
        with open(path, "x") as f:  # "x": fails when the file exists
            f.write(text)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; bench results are never overwritten") from None
    if not quiet:
        print(text, end="")
    print(f"wrote {path}", file=sys.stderr)
    if path.resolve().parent == RECORDS:
        print(f"indexed: {append(path, INDEX)}", file=sys.stderr)
    return path


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
