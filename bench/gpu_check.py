"""The first check of the GPU path on a GPU machine: environment, stage-1 fold 0 eager against CUDA
graphs, and the record that bench/gpu_check.sh leaves (gpu_check-DATE.json).

Usage (bench/gpu_check.sh runs them in order; docs/gpu.md):
    python -m bench gpu_check env --out env.json
    python -m bench gpu_check fold0 --data-dir DATA --epochs 2 --out fold0.json
    python -m bench gpu_check overrides --epochs 1 --out dag.yaml
    python -m bench gpu_check dag --samples CSV --rc RC --start S --dag-start S --data-dir DATA \
        --out dag.json
    python -m bench gpu_check report --logs DIR --out gpu_check-DATE.json

``fold0`` trains the fast profile's stage-1 net on fold 0 of the real data (depth-stratified
folds: the mosaic folds need the mosaic step) twice from the same seed, ``runtime.cuda_graphs``
false then true, each phase cut to ``--epochs``, and records per epoch the loss, lr, images/s
and validation score, the peak memory and whether the two runs agree within bf16 noise.
``overrides`` writes the config that cuts the fast profile's DAG to a few minutes: every phase
``--epochs`` long, encoders unpretrained (no network there), every non-blank test tile a
pseudo-label (a short teacher's balanced labels are none, so the pseudo phases would be
skipped). ``dag`` collects that run: wall time, snakemake's exit status and the targets it
reached, seconds per rule, the GPU busy share (nvidia-smi samples), train images/s per model
(each fold's median epoch after the first, and their sum: the folds train side by side), OOF per
model, stage and blend, and the wall time extrapolated to all 18,600 test tiles (each job whose
work grows with the test tiles takes time in proportion to the tiles it reads; a stage's fold
predictions run side by side, so the stage waits for its slowest). ``report`` gathers the
steps' files into the record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pandas as pd
import yaml

from bench.common import REPO, rule_seconds, write_result

PROFILE = REPO / "workflow" / "profiles" / "fast"
#: relative difference of two runs' per-epoch losses still counted as bf16 noise
LOSS_TOLERANCE = 0.05


def profile_config(profile: Path = PROFILE) -> dict:
    """config.yaml with the profile's recipe merged over it, as Snakemake merges them."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return _merged(config, yaml.safe_load((profile / "recipe.yaml").read_text()))


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def stage_model_names(config: dict) -> list[str]:
    return [name for stage in config["stages"] for name in config[f"stage{stage}"]["models"]]


def cut_models(config: dict, epochs: int) -> dict:
    """``models`` overrides: every phase of every stage model ``epochs`` long, no minutes
    budget, encoders not pretrained."""
    models = {}
    for name in stage_model_names(config):
        phases = [
            {**{k: v for k, v in phase.items() if k != "minutes"}, "epochs": epochs}
            for phase in config["models"][name]["phases"]
        ]
        models[name] = {"model": {"pretrained": "none"}, "phases": phases}
    return models


def dag_overrides(epochs: int) -> dict:
    """The config merged over the fast profile for the check's DAG run."""
    return {
        "models": cut_models(profile_config(), epochs),
        "pseudo": {"method": "confident", "min_confidence": 0.0},
    }


def environment() -> dict:
    """nvidia-smi, torch, CUDA and cuDNN versions, the device, and the imports the rules need."""
    import snakemake
    import torch

    import saltseg

    smi = shutil.which("nvidia-smi")
    query = "name,driver_version,memory.total,compute_mode"
    out = {
        "nvidia_smi": (
            subprocess.run(
                [smi, f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            if smi
            else None
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "saltseg": str(Path(saltseg.__file__).parent),
        "snakemake": snakemake.__version__,
    }
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["capability"] = list(torch.cuda.get_device_capability(0))
        out["device_count"] = torch.cuda.device_count()
    return out


def fold0(data_dir: str, epochs: int, seed: int = 0) -> dict:
    """Stage 1, fold 0 of ``data_dir`` with the fast profile's stage-1 net, graphs off then on."""
    import numpy as np
    import torch

    from saltseg.config import model_params
    from saltseg.data.folds import make_folds
    from saltseg.data.kaggle import load_train
    from saltseg.models import build_model
    from saltseg.runtime.device import resolve_runtime
    from saltseg.training.loop import fit

    config = profile_config()
    name = config["stage1"]["models"][0]
    params = model_params(config, name)
    params["model"]["pretrained"] = "none"
    params["phases"] = cut_models(config, epochs)[name]["phases"]
    params["val_every"] = 1
    tiles = load_train(data_dir, config["tile_size"])
    folds = make_folds(tiles.ids, tiles.depths, config["folds"]["n_folds"], seed)["fold"]
    folds = folds.to_numpy()
    train, val = tiles.subset(folds != 0), tiles.subset(folds == 0)
    runs = {}
    for graphs in ("false", "true") if torch.cuda.is_available() else ("false",):  # CPU: a smoke
        runtime = resolve_runtime("auto", cuda_graphs=graphs)
        torch.manual_seed(seed)
        model = build_model(params["arch"], config["tile_size"], **params["model"])
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            history = fit(model, params, train, val, runtime, work, seed)["history"]
        peak = torch.cuda.max_memory_allocated() if runtime.device.type == "cuda" else None
        runs[f"cuda_graphs_{graphs}"] = {
            "seconds": round(time.perf_counter() - start, 1),
            "peak_memory_mib": round(peak / 2**20) if peak else None,
            "epochs": [
                {k: row.get(k) for k in ("phase", "epoch", "lr", "train_loss", "val_metric")}
                | {"images_per_s": round(row["images_per_s"], 1)}
                for row in history
            ],
        }
    out = {"model": name, "train_tiles": len(train), "val_tiles": len(val), "runs": runs}
    if len(runs) < 2:
        return out
    eager, graphed = (runs[f"cuda_graphs_{g}"]["epochs"] for g in ("false", "true"))
    loss_gap = max(
        abs(g["train_loss"] - e["train_loss"]) / abs(e["train_loss"])
        for e, g in zip(eager, graphed)
    )
    return out | {
        "agreement": {
            "max_relative_loss_gap": round(float(loss_gap), 4),
            "tolerance": LOSS_TOLERANCE,
            "within": bool(loss_gap <= LOSS_TOLERANCE),
            "same_lrs": all(
                np.isclose(e["lr"], g["lr"], rtol=1e-5) for e, g in zip(eager, graphed)
            ),
        },
    }


ALL_TEST_TILES = 18_600
#: rules whose work grows with the test tiles; predict's also holds the fold's OOF tiles
TEST_RULES = ("merge_folds", "ensemble", "pseudo_fold", "blend", "postprocess", "submission")


def busy_share(samples: Path) -> dict | None:
    """Mean, median and share of samples above 50 % of nvidia-smi's utilization.gpu."""
    if not samples.is_file() or not samples.stat().st_size:
        return None
    frame = pd.read_csv(samples, header=None, names=["time", "busy", "memory_mib"])
    busy = pd.to_numeric(frame["busy"], errors="coerce").dropna()
    return {
        "samples": int(len(busy)),
        "mean_percent": round(float(busy.mean()), 1),
        "median_percent": float(busy.median()),
        "share_over_50_percent": round(float((busy > 50).mean()), 3),
        "peak_memory_mib": float(pd.to_numeric(frame["memory_mib"], errors="coerce").max()),
    }


def train_speed(results: Path) -> dict[str, dict]:
    """Per stage/model: each fold's median images/s over its epochs after the first, their sum."""
    speeds: dict[str, dict] = {}
    for history in sorted(results.glob("stage*/*/fold*/history.csv")):
        rows = pd.read_csv(history)
        steady = rows["images_per_s"].iloc[1:] if len(rows) > 1 else rows["images_per_s"]
        key = f"{history.parts[-4]}/{history.parts[-3]}"
        fold = history.parts[-2]
        speeds.setdefault(key, {"per_fold": {}})["per_fold"][fold] = round(float(steady.median()))
    for entry in speeds.values():
        entry["sum"] = sum(entry["per_fold"].values())
    return speeds


def extrapolated_wall(
    results: Path, wall: float, n_train: int, n_test: int, n_oof: int
) -> float | None:
    """The DAG's wall seconds with all 18,600 test tiles (see the module docstring)."""
    if not n_test:
        return None
    benchmarks = results / "benchmarks"
    extra = 0.0
    ratio_test = ALL_TEST_TILES / n_test
    predict: dict[str, float] = {}
    for tsv in (benchmarks / "predict").glob("*.tsv"):
        stage_model = tsv.stem.rsplit("_fold", 1)[0]
        seconds = float(pd.read_csv(tsv, sep="\t")["s"].sum())
        predict[stage_model] = max(predict.get(stage_model, 0.0), seconds)
    ratio_predict = (ALL_TEST_TILES + n_oof) / (n_test + n_oof)
    extra += sum(s * (ratio_predict - 1) for s in predict.values())
    seconds = rule_seconds(benchmarks)
    extra += sum(seconds.get(rule, 0.0) * (ratio_test - 1) for rule in TEST_RULES)
    ratio_tiles = (n_train + ALL_TEST_TILES) / (n_train + n_test)  # the mosaic reads every tile
    extra += seconds.get("mosaic", 0.0) * (ratio_tiles - 1)
    return round(wall + extra, 1)


def oof_table(results: Path) -> list[dict]:
    """results/summary.csv (every model, stage ensemble and the blend), or the cv.json files
    reached when the run stopped before the summary."""
    summary = results / "summary.csv"
    if summary.is_file():
        table = pd.read_csv(summary)
        return table.astype(object).where(table.notna(), None).to_dict(orient="records")
    rows = []
    for cv in sorted(results.glob("*/*/cv.json")):
        rows.append({"name": f"{cv.parts[-3]}/{cv.parts[-2]}", **json.loads(cv.read_text())})
    return rows


def dag_run(args: argparse.Namespace) -> dict:
    """What the DAG step left in ``args.results`` (see the module docstring)."""
    results, now = Path(args.results), time.time()
    data = Path(args.data_dir)
    n_test = len(pd.read_csv(data / "sample_submission.csv"))
    n_train = len(pd.read_csv(data / "train.csv"))
    folds = results / "folds.csv"
    n_oof = n_train // max(int(pd.read_csv(folds)["fold"].nunique()), 1) if folds.is_file() else 0
    dag_wall = round(now - args.dag_start, 1)
    return {
        "snakemake_exit_status": args.rc,
        "reached": {t: (results / f"{t}.csv").is_file() for t in ("submission", "summary")},
        "wall_seconds": round(now - args.start, 1),
        "dag_wall_seconds": dag_wall,
        "train_tiles": n_train,
        "test_tiles": n_test,
        "dag_wall_seconds_at_18600_test_tiles": extrapolated_wall(
            results, dag_wall, n_train, n_test, n_oof
        ),
        "rule_seconds": rule_seconds(results / "benchmarks"),
        "gpu_busy": busy_share(Path(args.samples)),
        "train_images_per_s": train_speed(results),
        "oof": oof_table(results),
    }


def report(logs: Path) -> dict:
    """The record: each step's exit status and seconds, and what each step wrote."""
    steps = [json.loads(line) for line in (logs / "steps.jsonl").read_text().splitlines()]
    out: dict = {"steps": steps}
    for key in ("env", "gpu_step", "fold0", "dag"):
        path = logs / f"{key}.json"
        out[key] = json.loads(path.read_text()) if path.is_file() else None
    junit = logs / "tests.xml"
    if junit.is_file():
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [
            f"{case.get('classname')}::{case.get('name')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        ]
        out["tests"] = {**counts, "failed": failed}
    return out


def headline(record: dict) -> str:
    """Which steps passed, the graphs' speed-up on fold 0 and whether the DAG finished."""
    failed = [s["step"] for s in record["steps"] if s["rc"]]
    parts = [f"{len(record['steps']) - len(failed)}/{len(record['steps'])} steps passed"]
    parts[0] += f" (failed: {', '.join(failed)})" if failed else ""
    runs = (record.get("fold0") or {}).get("runs", {})
    if len(runs) == 2:
        rates = [
            sum(e["images_per_s"] for e in runs[f"cuda_graphs_{g}"]["epochs"])
            for g in ("false", "true")
        ]
        agree = "" if record["fold0"]["agreement"]["within"] else "not "
        parts.append(f"fold 0 graphs x{rates[1] / rates[0]:.2f} img/s, losses {agree}within noise")
    dag = record.get("dag") or {}
    if dag:
        parts.append(
            f"fast DAG reached {', '.join(k for k, v in dag['reached'].items() if v) or 'nothing'}"
        )
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env").add_argument("--out", required=True)
    one = commands.add_parser("fold0")
    one.add_argument("--data-dir", required=True)
    one.add_argument("--epochs", type=int, default=2)
    one.add_argument("--out", required=True)
    cut = commands.add_parser("overrides")
    cut.add_argument("--epochs", type=int, default=1)
    cut.add_argument("--out", required=True)
    run = commands.add_parser("dag")
    run.add_argument("--results", default="results")
    run.add_argument("--samples", required=True, help="nvidia-smi samples (CSV)")
    run.add_argument("--rc", type=int, required=True, help="snakemake's exit status")
    run.add_argument("--start", type=float, required=True, help="the check's start (epoch s)")
    run.add_argument("--dag-start", type=float, required=True, help="snakemake's start")
    run.add_argument("--data-dir", required=True)
    run.add_argument("--out", required=True)
    gather = commands.add_parser("report")
    gather.add_argument("--logs", required=True)
    gather.add_argument("--out", help="default: bench/records/gpu_check-<date>.json")
    args = parser.parse_args(argv)
    if args.command == "overrides":
        Path(args.out).write_text(yaml.safe_dump(dag_overrides(args.epochs), sort_keys=False))
        return
    if args.command == "report":
        record = report(Path(args.logs))
        command = "bash bench/gpu_check.sh run"
        write_result("gpu_check", record, args.out, command=command, headline=headline(record))
        return
    if args.command == "dag":
        payload = dag_run(args)
    else:
        payload = environment() if args.command == "env" else fold0(args.data_dir, args.epochs)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
