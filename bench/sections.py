"""Whole-section prediction on CPU: throughput, and stitched vs per-tile quality.

Usage: python -m bench sections [--threads 2] [--models results/stage1] [--out FILE.json]
Throughput (best of two runs): ``predict_section`` on a synthetic 606x808 section (stride 50, TTA
none+hflip) with one randomly initialised model of the test size and of the default config's size
(an ensemble costs this times its model.pt files x snapshots). Quality, when ``--models`` holds
trained models: on the 12 tiles of an unseen 303x404 synthetic section, the competition metric,
salt IoU and probability statistics of the ensemble predicted tile by tile, stitched from
overlapping tiles of the uint8 section, and through ``predict_section`` (percentile scaling too).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, write_result
from saltseg.data.synthetic import draw_section
from saltseg.metrics import competition_metric
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.sections import predict_section
from saltseg.sections.predict import Ensemble, resolve_threshold
from saltseg.sections.stitch import stitch

SIZES = {
    "test_size": {
        "encoder_name": "resnet10t",
        "decoder_channels": [16, 16, 8, 8, 8],
        "pad_to": 128,
    },
    "default_size": {
        "encoder_name": "resnet10t",
        "decoder_channels": [64, 32, 16, 8, 8],
        "pad_to": 128,
    },
}
TILE, STRIDE, TTA, REPEATS = 101, 50, ("none", "hflip"), 2


def tiles_of(section: np.ndarray) -> np.ndarray:
    """The non-overlapping ``TILE`` tiles of a section whose sides are multiples of ``TILE``."""
    h, w = section.shape
    return section.reshape(h // TILE, TILE, w // TILE, TILE).swapaxes(1, 2).reshape(-1, TILE, TILE)


def pixel_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union of all salt pixels of the section."""
    union = (pred | (truth > 0)).sum()
    return float((pred & (truth > 0)).sum() / union) if union else 1.0


def throughput(work: Path, runtime) -> dict:
    image, _ = draw_section(np.random.default_rng(0), 6, 8)
    np.save(work / "section.npy", image)
    out = {}
    for name, kwargs in SIZES.items():
        torch.manual_seed(0)
        model = build_model("unet", TILE, **kwargs)
        bundle = {"arch": "unet", "model": kwargs, "tile": TILE, "snapshots": [model.state_dict()]}
        (work / name / "m" / "fold0").mkdir(parents=True)
        torch.save(bundle, work / name / "m" / "fold0" / "model.pt")
        runs = [
            predict_section(
                work / name,
                work / "section.npy",
                work / f"out_{name}",
                STRIDE,
                64,
                TTA,
                0.5,
                runtime=runtime,
            )
            for _ in range(REPEATS)
        ]
        info = max(runs, key=lambda run: run["tiles_per_s"])  # the least disturbed run
        out[name] = {
            "model": kwargs,
            "section": list(image.shape),
            "tiles": info["tiles"],
            "seconds": round(info["seconds"], 2),
            "tiles_per_s": round(info["tiles_per_s"], 1),
            "section_pixels_per_s": round(info["pixels_per_s"]),
            "forward_tiles_per_s": round(info["tiles_per_s"] * len(TTA), 1),
        }
    return out


def quality(models: Path, work: Path, runtime) -> dict:
    image, mask = draw_section(np.random.default_rng(12345), 3, 4)
    ensemble = Ensemble(models, runtime, TTA)
    cut, source = resolve_threshold("tuned", models)
    truth = tiles_of(mask)
    start = time.perf_counter()
    per_tile = ensemble(tiles_of(image))
    per_tile_s = time.perf_counter() - start
    stitched = tiles_of(stitch(image, ensemble, TILE, STRIDE, 64))
    np.save(work / "quality.npy", image)
    info = predict_section(
        models, work / "quality.npy", work / "out_q", STRIDE, 64, TTA, cut, runtime=runtime
    )
    scaled = tiles_of(np.load(work / "out_q" / "probability.npy"))
    result = {"models": info["models"], "threshold": cut, "threshold_source": source}
    for name, probs in [
        ("per_tile", per_tile),
        ("stitched", stitched),
        ("predict_section", scaled),
    ]:
        scores = {f"metric_at_{t}": competition_metric(truth, probs > t) for t in (0.5, cut)}
        scores["pixel_iou"] = pixel_iou(truth, probs > cut)
        scores["prob_mean"], scores["prob_max"] = float(probs.mean()), float(probs.max())
        scores["mean_abs_diff_to_per_tile"] = float(np.abs(probs - per_tile).mean())
        result[name] = {k: round(v, 4) for k, v in scores.items()}
    result["per_tile"]["tiles_per_s"] = round(len(truth) / per_tile_s, 1)
    result["predict_section"]["tiles"] = info["tiles"]
    result["predict_section"]["tiles_per_s"] = round(info["tiles_per_s"], 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=str(REPO / "results" / "stage1"))
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runtime = resolve_runtime("cpu", "false", "false")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "threads": args.threads,
            "stride": STRIDE,
            "tta": list(TTA),
            "load_average_1m_at_start": round(load, 2),
        }
        result["throughput"] = throughput(Path(tmp), runtime)
        if any(Path(args.models).rglob("model.pt")):
            result["quality"] = quality(Path(args.models), Path(tmp), runtime)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    rates = [t["tiles_per_s"] for t in result["throughput"].values()]
    headline = f"predict-section {min(rates):g}-{max(rates):g} tiles/s per model file"
    write_result("sections", result, args.out, headline=headline)


if __name__ == "__main__":
    main()
