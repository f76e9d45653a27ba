"""Training-step speed of the fast profile's nets, eager against CUDA-graph replays (img/s).

Usage: python -m bench gpu_step [--device cuda] [--batches 32 128] [--steps 100] [--out PATH]

Times saltseg's own step (``saltseg.training.loop.train_step``: autocast, loss, backward, the
fused Adam of a captured phase) on batches already on the device, as ``DeviceBatches`` feeds
them: the ResNet34 U-Net at pad 128 (issue 35's reference, 1,269 img/s at batch 32 eager on an
H200) and each network of the fast profile's stages as the profile defines it, with the loss of
its last phase. Each setting runs ``--warmup`` steps (the graph's warm-up and
capture included), then ``--steps`` timed steps with one device sync at the end. On a CPU only
the eager rows run (a tiny check that the bench works).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from bench.common import write_result
from bench.gpu_check import profile_config, stage_model_names
from saltseg.losses import build_loss
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.training import loop
from saltseg.training.graphed import GraphedStep
from saltseg.training.optim import build_optimizer

#: issue 35's reference: 1,269 img/s at batch 32, eager, on an H200
REFERENCE = {"arch": "unet", "model": {"encoder_name": "resnet34", "pad_to": 128}}


def nets() -> dict[str, dict]:
    """The reference and each network of the fast profile's stages (read from the profile, the
    first model of each; the loss of its last phase)."""
    config = profile_config()
    out = {"unet34_pad128": {**REFERENCE, "phases": [{"loss": "bce_dice"}]}}
    for name in stage_model_names(config):
        model = config["models"][name]
        if all((m["arch"], m["model"]) != (model["arch"], model["model"]) for m in out.values()):
            out[name] = model
    return out


def images_per_s(net: dict, batch: int, graphed: bool, runtime, warmup: int, steps: int) -> float:
    """Train ``steps`` steps of ``net`` at ``batch`` after ``warmup``; return images/s."""
    phase = net["phases"][-1]
    loss = build_loss(phase["loss"], phase.get("empty_weight", 0.0), phase.get("side_weight", 0.0))
    torch.manual_seed(0)
    model = build_model(net["arch"], 101, **{**net["model"], "pretrained": "none"})
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, {"optimizer": "adam", "lr": 1e-3}, graphed=True)
    step = partial(
        loop._step_on,
        model,
        loss,
        optimizer,
        runtime.grad_scaler(),
        runtime,
    )
    if graphed:
        step = GraphedStep(step, optimizer, f"batch {batch}")
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
    parser.add_argument("--nets", nargs="+", default=list(nets()), choices=list(nets()))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", help="default: bench/records/gpu_step-<date>.json")
    args = parser.parse_args(argv)
    runtime = resolve_runtime(args.device)
    modes = [False, True] if runtime.device.type == "cuda" else [False]
    rows = []
    specs = nets()
    for net in args.nets:
        for batch in args.batches:
            for graphed in modes:
                rate = images_per_s(specs[net], batch, graphed, runtime, args.warmup, args.steps)
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
