"""Training-step speed of the fast profile's nets, eager against CUDA-graph replays (img/s).

Usage: python -m bench gpu_step [--device cuda] [--batches 32 128] [--steps 100] [--out PATH]

Times saltseg's own step (``saltseg.training.loop.train_step``: autocast, loss, backward, the
fused Adam of a captured phase) on batches already on the device, as ``DeviceBatches`` feeds
them: the ResNet34 U-Net at pad 128 (issue 35's reference, 1,269 img/s at batch 32 eager on an
H200) and the fast profile's stage-1 net (deep supervision at 0.3 with an empty head, scSE,
hypercolumn; elu+1 Lovasz). Each setting runs ``--warmup`` steps (the graph's warm-up and
capture included), then ``--steps`` timed steps with one device sync at the end. On a CPU only
the eager rows run (a tiny check that the bench works).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from bench.common import write_result
from saltseg.losses import build_loss
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.training import loop
from saltseg.training.graphed import GraphedStep
from saltseg.training.optim import build_optimizer

NETS = {
    "unet34_pad128": ({"encoder_name": "resnet34", "pad_to": 128}, "bce_dice", 0.0, 0.0),
    "fast_unet34": (
        {
            "encoder_name": "resnet34",
            "pad_to": 128,
            "deep_supervision": True,
            "attention": "scse",
            "hypercolumn": True,
            "hypercolumn_channels": 16,
        },
        "lovasz_elu",
        0.05,
        0.3,
    ),
}


def images_per_s(net: str, batch: int, graphed: bool, runtime, warmup: int, steps: int) -> float:
    """Train ``steps`` steps of ``net`` at ``batch`` after ``warmup``; return images/s."""
    model_args, loss, empty_weight, side_weight = NETS[net]
    torch.manual_seed(0)
    model = build_model("unet", 101, pretrained="none", **model_args).to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, {"optimizer": "adam", "lr": 1e-3}, graphed=True)
    step = partial(
        loop._step_on,
        model,
        build_loss(loss, empty_weight, side_weight),
        optimizer,
        runtime.grad_scaler(),
        runtime,
    )
    if graphed:
        step = GraphedStep(step, optimizer, f"{net} at batch {batch}")
    x = runtime.to(torch.rand(batch, 1, 101, 101, device=runtime.device))
    y = (torch.rand(batch, 1, 101, 101, device=runtime.device) > 0.7).float()
    for _ in range(warmup):
        step(x, y)
    _sync(runtime.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    _sync(runtime.device)
    return steps * batch / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", help="default: bench/records/gpu_step-<date>.json")
    args = parser.parse_args(argv)
    runtime = resolve_runtime(args.device)
    modes = [False, True] if runtime.device.type == "cuda" else [False]
    rows = []
    for net in args.nets:
        for batch in args.batches:
            for graphed in modes:
                rate = images_per_s(net, batch, graphed, runtime, args.warmup, args.steps)
                rows.append(
                    {
                        "net": net,
                        "batch": batch,
                        "cuda_graph": graphed,
                        "images_per_s": round(rate, 1),
                    }
                )
                print(rows[-1], flush=True)
    eager = {(r["net"], r["batch"]): r["images_per_s"] for r in rows if not r["cuda_graph"]}
    graph = {(r["net"], r["batch"]): r["images_per_s"] for r in rows if r["cuda_graph"]}
    headline = "; ".join(
        f"{net} at {batch}: eager {rate:,.0f} img/s"
        + (f", graph x{graph[net, batch] / rate:.2f}" if (net, batch) in graph else "")
        for (net, batch), rate in eager.items()
    )
    write_result(
        "gpu_step",
        {
            "precision": str(runtime.amp_dtype),
            "channels_last": runtime.channels_last,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "rows": rows,
        },
        args.out,
        headline=f"{runtime.device.type}: {headline}",
    )


if __name__ == "__main__":
    main()
