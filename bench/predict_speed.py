"""Prediction forwards/s of the `cpu` profile's network, by batch size, with and without the
batch norms folded into their convolutions (predict_speed.json).

Usage: python -m bench predict_speed [--jobs 3,1] [--tiles 512] [--repeats 2]

Each job is a separate single-thread process running saltseg's ``predict_probs`` with flip TTA
on random tiles, after a warm-up batch of its size (oneDNN builds its kernels per shape), in the
runtime ``auto`` picks (bf16 with AMX, channels-last); ``--jobs 3`` runs
three at once, as the profile's three folds predict side by side. A setting's figure is the
median over ``--repeats`` rounds, the settings interleaved within each round, since this
machine's speed drifts within minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from bench.common import REPO, write_result

BATCHES = (16, 64, 256)
JOB = """
import json, time, numpy as np, torch, yaml
import saltseg.inference.predict as predict
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
torch.set_num_threads(1)
if not {fused}:
    predict.fuse_conv_bn = lambda model, probe: model.eval()
recipe = yaml.safe_load(open({recipe!r}))
model = build_model("unet", 101, **recipe["models"]["cpu_unet"]["model"])
runtime = resolve_runtime()
model.to(memory_format=torch.channels_last)
images = np.random.default_rng(0).integers(0, 256, ({tiles}, 101, 101), dtype=np.uint8)
predict.predict_probs(model, images[:{batch}], runtime, {batch}, ("none", "hflip"))  # warm-up
start = time.perf_counter()
predict.predict_probs(model, images, runtime, {batch}, ("none", "hflip"))
print(json.dumps(2 * {tiles} / (time.perf_counter() - start)))
"""


def run_jobs(n: int, batch: int, fused: bool, tiles: int) -> list[float]:
    """Forwards/s of each of ``n`` single-thread jobs started at once."""
    recipe = str(REPO / "workflow" / "profiles" / "cpu" / "recipe.yaml")
    code = JOB.format(fused=fused, recipe=recipe, tiles=tiles, batch=batch)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="3,1", help="single-thread jobs side by side")
    parser.add_argument("--tiles", type=int, default=512, help="tiles per job (a multiple of 256)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    rows = []
    for n in map(int, args.jobs.split(",")):
        rounds: dict[tuple[int, bool], list[float]] = {}
        for _ in range(args.repeats):
            for batch in BATCHES:
                for fused in (False, True):
                    rounds.setdefault((batch, fused), []).append(
                        statistics.mean(run_jobs(n, batch, fused, args.tiles))
                    )
        for (batch, fused), rates in rounds.items():
            row = {
                "jobs": n,
                "batch_size": batch,
                "fused": fused,
                "forwards_per_s_per_job": round(statistics.median(rates), 1),
                "rounds": [round(r, 1) for r in rates],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_result(
        "predict_speed",
        {
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
