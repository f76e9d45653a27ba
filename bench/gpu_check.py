"""The first check of the GPU path on a GPU machine: environment, stage-1 fold 0 eager against CUDA
graphs, and the record that bench/gpu_check.sh leaves (gpu_check-DATE.json).

Usage (bench/gpu_check.sh runs them in order; docs/gpu.md):
    python -m bench gpu_check env --out env.json
    python -m bench gpu_check fold0 --data-dir DATA --epochs 2 --out fold0.json
    python -m bench gpu_check overrides --epochs 1 --out dag.yaml
    python -m bench gpu_check report --logs DIR --out gpu_check-DATE.json

``fold0`` trains the fast profile's stage-1 net on fold 0 of the real data (depth-stratified
folds: the mosaic folds need the mosaic step) twice from the same seed, ``runtime.cuda_graphs``
false then true, each phase cut to ``--epochs``, and records per epoch the loss, lr, images/s
and validation score, the peak memory and whether the two runs agree within bf16 noise.
``overrides`` writes the config that cuts the fast profile's DAG to a few minutes: every phase
``--epochs`` long, encoders unpretrained (no network there), every non-blank test tile a
pseudo-label (a short teacher's balanced labels are none, so the pseudo phases would be
skipped). ``report`` gathers the steps' files into the record.
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

import yaml

from bench.common import REPO, write_result

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
    payload = environment() if args.command == "env" else fold0(args.data_dir, args.epochs)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
