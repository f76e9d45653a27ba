"""Stage-1 U-Net on one fold of real labelled tiles: GPU throughput, utilisation and OOF score.

Usage: python -m bench gpu_stage1 --npz TRAIN.npz [--epochs 40] [--out PATH]
TRAIN.npz holds ``ids, images, masks, depths`` of the labelled tiles (made from a Kaggle-layout
dir with ``saltseg.data.kaggle.load_train``). It trains fold 0 of 5 (depth folds) through the
library's own loop (``saltseg.training.loop.fit``), first timing short runs of each
precision/loader setting, then one full run; the GPU's utilisation is sampled through NVML.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import numpy as np
import torch

from bench.common import write_result
from saltseg.binarize import best_threshold
from saltseg.data.folds import make_folds
from saltseg.data.kaggle import Tiles
from saltseg.inference.predict import predict_ensemble
from saltseg.metrics import competition_metric
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.training.loop import fit

AUGMENT = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.0, "p": 0.2},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.0, "contrast_limit": 0.2, "p": 0.1},
    {
        "name": "Affine",
        "translate_percent": [-0.1625, 0.1625],
        "scale": [0.4, 1.6],
        "rotate": 0,
        "border_mode": 4,
        "p": 0.7,
    },
]
MODEL = {
    "encoder_name": "resnet34",
    "pretrained": "none",
    "decoder_channels": [256, 128, 64, 32, 16],
    "pad_to": 128,
}


class Utilisation:
    """Mean GPU utilisation (NVML) over the ``with`` block, sampled every 0.1 s."""

    def __enter__(self):
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.samples, self.stop = [], threading.Event()

        def sample():
            while not self.stop.wait(0.1):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.mean = float(np.mean(self.samples)) if self.samples else None


def run(
    train,
    val,
    epochs,
    batch,
    lr,
    amp,
    workers,
    seed=0,
    arch="unet",
    model_kwargs=MODEL,
    loss="bce_dice",
    compile=False,
):
    params = {
        "arch": arch,
        "model": model_kwargs,
        "augment": AUGMENT,
        "phases": [
            {
                "loss": loss,
                "optimizer": "adam",
                "lr": lr,
                "schedule": "cosine",
                "epochs": epochs,
                "batch_size": batch,
                "snapshots": 1,
                "min_lr": lr / 100,
            }
        ],
    }
    runtime = resolve_runtime("auto", amp, "auto")
    torch.manual_seed(seed)
    model = build_model("unet", 101, **MODEL)
    with tempfile.TemporaryDirectory() as work, Utilisation() as util:
        start = time.perf_counter()
        result = fit(model, params, train, val, runtime, work, seed, workers)
        seconds = time.perf_counter() - start
    history = result["history"]
    return (
        model,
        runtime,
        {
            "arch": arch,
            "loss": loss,
            "compile": compile,
            "amp": amp,
            "workers": workers,
            "batch_size": batch,
            "epochs": epochs,
            "train_images_per_s": float(np.median([h["images_per_s"] for h in history])),
            "gpu_utilisation_percent": util.mean,
            "seconds": round(seconds, 1),
            "val_metric_last_epoch": history[-1]["val_metric"],
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--arch", default="unet", help="preset; non-unet presets at full size")
    parser.add_argument("--loss", default="bce_dice")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-sweep", action="store_true", help="skip the short settings sweep")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    kwargs = MODEL if args.arch == "unet" else {"pretrained": "none"}
    data = np.load(args.npz)
    tiles = Tiles(list(data["ids"]), data["images"], data["masks"], data["depths"])
    folds = make_folds(tiles.ids, tiles.depths, 5, seed=0)["fold"].to_numpy()
    train, val = tiles.subset(folds != 0), tiles.subset(folds == 0)
    settings = []
    for amp, workers in [] if args.no_sweep else [("false", 0), ("true", 0), ("true", 8)]:
        settings.append(run(train, val, 2, 32, 1e-3, amp, workers)[2])
        print(json.dumps(settings[-1]), flush=True)
    model, runtime, full = run(
        train,
        val,
        args.epochs,
        args.batch_size,
        1e-3,
        "true",
        8,
        arch=args.arch,
        model_kwargs=kwargs,
        loss=args.loss,
        compile=args.compile,
    )
    probs = predict_ensemble([model], val.images, runtime, 256, ("none", "hflip"))
    blank = val.images.reshape(len(val), -1).std(axis=1) == 0
    probs[blank] = 0
    threshold, tuned = best_threshold(val.masks, probs)
    full.update(
        {
            "oof_fold0_at_0.5_tta": competition_metric(val.masks, probs > 0.5),
            "oof_fold0_tuned_tta": tuned,
            "threshold": threshold,
            "n_train": len(train),
            "n_val": len(val),
        }
    )
    result = {
        "model": {"arch": args.arch, **kwargs},
        "augment": "the seed's list",
        "throughput_settings_2_epochs": settings,
        "full_run": full,
    }
    write_result("gpu_stage1", result, args.out)


if __name__ == "__main__":
    main()
