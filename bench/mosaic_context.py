"""Neighbour context and mosaic folds on real fold 0 (mosaic_context.json).

Usage: python -m bench mosaic_context --data-dir DATA --work DIR --model half128 \
    --variants depth_m0,mosaic_m0,mosaic_m13 --minutes 32 --threads 1 --out FILE

Each variant trains the ablation's ``--model`` (bench/ablation_cpu.py) on fold 0 of 5 of depth
folds or of mosaic folds (``folds.stratify: mosaic``: every mosaic inside one fold), with a
context margin of ``m`` px (``_m0``: the tile alone, reflect-padded as today). The mosaic layout
and the context windows are made by saltseg's own CLI under ``--work`` (the mosaic and context
rules' commands) and reused. Every row is scored on all of fold 0 and separately on its tiles
inside mosaics and its lone tiles; run variants side by side (one thread each) to compare them at
the same budget. Finished variants are skipped on a rerun.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from bench.ablation_cpu import run_variant, save, variants
from bench.common import write_result
from saltseg.data import kaggle
from saltseg.data.folds import make_folds
from saltseg.models.geometry import Geometry
from saltseg.mosaic.context import Context
from saltseg.mosaic.tables import read_table
from saltseg.runtime.device import keep_freed_memory, resolve_runtime

TRUST_RATIO = 1.0  # mosaic.trust_ratio of config.yaml


def saltseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "saltseg", *args], check=True)


def layout(data_dir: str, work: Path) -> tuple[Path, Path]:
    """The mosaic rule's tiles.parquet and pairs.parquet for ``data_dir`` (made once)."""
    tiles, pairs = work / "tiles.parquet", work / "pairs.parquet"
    if not tiles.is_file():
        outs = ["--tiles", str(tiles), "--pairs", str(pairs), "--png-dir", str(work / "png")]
        saltseg("mosaic", "--data-dir", data_dir, *outs, "--draw", "0")
    return tiles, pairs


def context(data_dir: str, work: Path, margin: int) -> Context:
    """The context rule's windows of ``margin`` (made once)."""
    path = work / f"margin{margin}.npz"
    if not path.is_file():
        tiles, pairs = layout(data_dir, work)
        ins = ["--layout", str(tiles), "--pairs", str(pairs), "--max-ratio", str(TRUST_RATIO)]
        saltseg(
            "context", "--data-dir", data_dir, *ins, "--margin", str(margin), "--out", str(path)
        )
    return Context.read(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work", required=True, help="folder for the layout and the windows")
    parser.add_argument("--model", default="half128", help="a variant of bench/ablation_cpu.py")
    parser.add_argument("--variants", default="depth_m0,mosaic_m0,mosaic_m13")
    parser.add_argument("--minutes", type=float, default=32.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runtime = resolve_runtime("cpu", "false", "auto")
    tiles = kaggle.load_train(args.data_dir, 101)
    depths = kaggle.read_depths(args.data_dir, tiles.ids)
    table = read_table(layout(args.data_dir, work)[0], ["id", "mosaic_id"]).set_index("id")
    mosaic = table.loc[tiles.ids, "mosaic_id"].to_numpy()
    lone = pd.Series(mosaic).map(table["mosaic_id"].value_counts()).to_numpy() == 1
    progress = work / "rows.json"  # rows so far: finished variants are skipped on a rerun
    result = json.loads(progress.read_text()) if progress.is_file() else {"rows": []}
    done = {row["variant"] for row in result["rows"]}
    for name in args.variants.split(","):
        if name in done:
            continue
        stratify, margin = name.split("_m")
        margin = int(margin)
        folds = make_folds(tiles.ids, depths, 5, 0, stratify, tiles.masks, mosaic)
        in_val = folds["fold"].to_numpy() == 0
        train, val = tiles.subset(~in_val), tiles.subset(in_val)
        blank = kaggle.is_blank(val.images)
        params = copy.deepcopy(variants(args.minutes)[args.model])
        params["lever"] = f"{args.model}, {stratify} folds, context margin {margin}"
        if margin:
            windows = context(args.data_dir, work, margin)
            train, val = windows.apply(train, labels=True), windows.apply(val)
            model = params["model"]
            resize = model.get("resize_to", 101)
            window = Geometry(101, resize, None, 1, margin).window  # stride 1: no rounding up
            model["pad_to"] = max(model.get("pad_to", resize), -(-window // 32) * 32)
            model["context"] = {"margin": margin}
        groups = {"in_mosaics": ~lone[in_val], "lone": lone[in_val]}
        trained = work / "ablation"  # checkpoints
        row = run_variant(
            f"{args.model}_{name}", params, train, val, blank, runtime, groups, work=trained
        )
        row |= {"variant": name, "n_val": len(val), "n_lone": int(lone[in_val].sum())}
        result["rows"].append(row)
        result.update(
            {
                "command": f"python -m bench mosaic_context --data-dir DATA --work DIR --model "
                f"{args.model} --variants {name} --minutes {args.minutes} --threads "
                f"{args.threads} (variants side by side, rows merged)",
                "trust_ratio": TRUST_RATIO,
            }
        )
        save(progress, result, row)
    write_result("mosaic_context", result, args.out, quiet=True)


if __name__ == "__main__":
    main()
