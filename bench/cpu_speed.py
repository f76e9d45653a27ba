"""Training and prediction speed of the `cpu` profile's network per setting (cpu_speed.json).

Usage: python -m bench cpu_speed [--threads 2] [--steps 40]

Times saltseg's own training step (saltseg.training.loop.train_step: autocast, backward, Adam)
and prediction (saltseg.inference.predict.predict_probs) on random 101x101 tiles, for batch sizes,
bf16 autocast, channels-last and torch.compile, one setting after the other in one process.
Rates are images (tiles) per second after warm-up steps; compile time is reported apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.common import write_result
from saltseg.inference.predict import predict_probs
from saltseg.losses import build_loss
from saltseg.models import build_model
from saltseg.runtime.device import keep_freed_memory, resolve_runtime
from saltseg.training.loop import train_step

EXPERIMENTS = yaml.safe_load(
    (Path(__file__).with_name("experiments") / "cpu_speed.yaml").read_text()
)
MODEL = EXPERIMENTS["model"]
SETTINGS = EXPERIMENTS["settings"]


def time_setting(setting: dict, steps: int, warmup: int = 5, tiles: int = 512) -> dict:
    runtime = resolve_runtime(
        "cpu",
        setting.get("amp", "false"),
        setting.get("channels_last", "auto"),
        compile=setting.get("compile", False),
    )
    torch.manual_seed(0)
    model = build_model("unet", 101, **{**MODEL, **setting.get("model", {})}).to(runtime.device)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--tiles", type=int, default=512, help="tiles predicted (flip TTA)")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    rows = {}
    for name in args.settings.split(","):
        rows[name] = {
            **SETTINGS[name],
            **time_setting(SETTINGS[name], args.steps, args.warmup, args.tiles),
        }
        print(name, rows[name], flush=True)
    write_result(
        "cpu_speed",
        {
            "model": MODEL,
            "threads": args.threads,
            "settings": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
