"""Training speed: batch augmentation against per-tile albumentations (batch_augment.json).

Usage: python -m bench batch_augment [--data-dir synthetic|DIR] [--models unet_r10] [--threads 2]

Trains each model of config.yaml (its model, its augment list, its first phase's batch size and
optimiser) with saltseg's own loop, once with ``augment_on: tile`` (albumentations per tile in a
DataLoader) and once with ``augment_on: batch`` (whole batches on the device), alternating the
two for ``--rounds`` rounds of ``--epochs`` epochs. Rates are the training epochs' images per
second (validation excluded), the median over rounds, on the same tiles in one process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from bench.common import REPO, write_result
from saltseg.config import model_params
from saltseg.data import kaggle
from saltseg.data.synthetic import generate
from saltseg.models import build_model
from saltseg.runtime.device import keep_freed_memory, resolve_runtime
from saltseg.training.loop import fit


def rate(params: dict, mode: str, tiles, val, runtime, epochs: int, work: Path) -> float:
    phase = {**params["phases"][0], "epochs": epochs, "snapshots": 0}
    phase.pop("minutes", None)
    run = {**params, "augment_on": mode, "val_every": 1000, "phases": [phase]}
    torch.manual_seed(0)
    model = build_model(run["arch"], 101, **run["model"])
    history = fit(model, run, {"train": tiles}, val, runtime, work / mode, 0)["history"]
    return statistics.median(h["images_per_s"] for h in history)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="synthetic")
    parser.add_argument("--models", default="unet_r10")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    runtime = resolve_runtime("cpu", "false", "auto")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir == "synthetic":
            data_dir = str(Path(tmp) / "synthetic")
            generate(data_dir)
        tiles = kaggle.load_train(data_dir, 101)
        val = tiles.subset(torch.arange(len(tiles)).numpy() < 32)
        rows = {}
        for name in args.models.split(","):
            params = model_params(config, name)
            rates: dict[str, list[float]] = {"tile": [], "batch": []}
            for k in range(args.rounds):
                for mode in ("tile", "batch") if k % 2 == 0 else ("batch", "tile"):
                    work = Path(tmp) / f"{name}_{k}"
                    rates[mode].append(rate(params, mode, tiles, val, runtime, args.epochs, work))
                    print(name, mode, round(rates[mode][-1], 1), flush=True)
            tile, batch = statistics.median(rates["tile"]), statistics.median(rates["batch"])
            rows[name] = {
                "augment": params.get("augment"),
                "batch_size": params["phases"][0]["batch_size"],
                "images_per_s_tile": round(tile, 1),
                "images_per_s_batch": round(batch, 1),
                "speedup": round(batch / tile, 3),
                "rounds": {m: [round(r, 1) for r in v] for m, v in rates.items()},
            }
    write_result(
        "batch_augment",
        {
            "data": "synthetic (the default run's tiles)"
            if args.data_dir == "synthetic"
            else "real",
            "n_train": len(tiles),
            "threads": args.threads,
            "models": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
