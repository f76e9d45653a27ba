"""Training and prediction speed of the `cpu` profile's network per setting (cpu_speed.json).

Usage: python -m bench cpu_speed [--threads 2] [--steps 40]

Times saltseg's own training step (saltseg.training.loop.train_step: autocast, backward, Adam)
and prediction (saltseg.inference.predict.predict_probs) on random 101x101 tiles, for batch sizes,
bf16 autocast, channels-last and torch.compile, one setting after the other in one process.
Rates are images (tiles) per second after warm-up steps; compile time is reported apart. The
timer (``time_setting``) lives in bench/common.py, whose speed probe times the ``bs16`` setting
of bench/experiments/cpu_speed.yaml with it; ``net: cpu`` settings time the `cpu` profile's own
net (bench/fold0.py).
"""

from __future__ import annotations

import argparse

import torch

from bench.common import SPEED_MODEL as MODEL
from bench.common import SPEED_SETTINGS as SETTINGS
from bench.common import time_setting, write_result
from bench.fold0 import cpu_net
from saltseg.runtime.device import keep_freed_memory


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
        setting = SETTINGS[name]
        net = cpu_net()["model"] if setting.get("net") == "cpu" else None
        rows[name] = {
            **setting,
            **({"model": net} if net else {}),
            **time_setting(setting, args.steps, args.warmup, args.tiles, net),
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
        headline="train img/s: "
        + ", ".join(f"{name} {row['train_images_per_s']:g}" for name, row in rows.items()),
    )


if __name__ == "__main__":
    main()
