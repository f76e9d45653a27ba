"""Training and inference images/s of every preset and of a plain smp U-Net baseline, same run.

Usage: python -m bench presets [--device auto|cpu|cuda] [--batch-size N] [--steps N] [--rounds N]
    [--warmup N] [--threads N] [--only NAME ...] [--[no-]plain] [--out PATH] [--quick]
    (needs ``pip install -e .[bench]``)
Synthetic 101x101 batches, one device. Training: forward + loss (bce_dice, deep_supervision for
deep-supervised presets) + backward + Adam step, under the library's runtime (channels_last; bf16
autocast on CUDA; on CPU malloc keeps freed memory, as in ``saltseg train``). Inference:
``predict_probs``, with and without hflip TTA.

Each preset is compared with the plain baseline *of similar size*: smp ``Unet`` with the preset's
encoder, stem and input geometry (``bes_resnext50`` with smp Unet-resnext50_32x4d on tiles resized
to 192 and padded to 224; ``pad128`` with smp Unet-resnet34 given the same stride-1 stem on tiles
padded to 128), so a ratio measures the preset's decoder, center and heads, not its input size.
Every row also has its ratio to the reference, smp Unet-resnet34 on tiles padded to 128.
Each preset and its baseline are timed in turn, round after round, and each rate is the median
of the rounds. Baselines run under the same runtime as the presets (``ratio_to_baseline``, the
strict comparison the goal is judged on) and, with ``--plain`` (default on CUDA), also plainly,
in fp32 and NCHW as smp runs out of the box (``ratio_to_plain_baseline``: what a user gains by
switching, runtime included). Default out: bench/records/presets-<date>.json (the device in
its settings; the older presets_cpu.json and presets_cuda.json are this bench's too).
"""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser, BooleanOptionalAction, Namespace
from importlib.metadata import version
from typing import Any, NamedTuple

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from bench.common import write_result
from saltseg.data.dataset import to_tensor
from saltseg.inference.predict import predict_probs
from saltseg.losses import build_loss
from saltseg.models import ARCHITECTURES, build_model
from saltseg.models.geometry import Geometry
from saltseg.models.presets import PRESETS
from saltseg.runtime.device import Runtime, keep_freed_memory, resolve_runtime
from saltseg.training.loop import train_step

TILE = 101
TTA = ("none", "hflip")
RATES = ("train_images_per_s", "infer_images_per_s", "infer_tta_images_per_s")
Data = tuple[np.ndarray, np.ndarray]  # uint8 images and 0/1 masks, (N, 101, 101)
GOAL = (
    "every preset at least as fast per image as the baseline of similar size on CPU "
    "(ratio_to_baseline >= 1), and >= 1.5x the baseline on a GPU"
)


class BaselineSpec(NamedTuple):
    """smp Unet with ``encoder`` on tiles resized to ``resize_to`` and padded to ``pad_to``."""

    encoder: str
    resize_to: int
    pad_to: int
    stride1: bool = False

    @property
    def name(self) -> str:
        stem = "_stride1" if self.stride1 else ""
        size = f"pad{self.pad_to}" if self.resize_to == TILE else f"resize{self.resize_to}"
        if self.resize_to not in (TILE, self.pad_to):
            size += f"_pad{self.pad_to}"
        return f"smp_unet_{self.encoder}{stem}_{size}"


REFERENCE = BaselineSpec("resnet34", TILE, 128)


def matched_baseline(preset: str) -> BaselineSpec:
    """The baseline of similar size: the preset's encoder, stem and geometry in a plain smp Unet."""
    parts = PRESETS[preset]
    resize_to = parts.get("resize_to", TILE)
    return BaselineSpec(
        parts["encoder_name"],
        resize_to,
        parts.get("pad_to", resize_to),
        parts.get("stem", "default") == "stride1",
    )


class Baseline(nn.Module):
    """smp ``Unet`` on 101 tiles through :class:`Geometry` (resize, reflect-pad, and back).

    With ``stride1`` the encoder gets the presets' stem surgery (3x3 stride-1 first conv, no
    max-pool); smp's decoder follows the feature sizes, so its last blocks run at full size.
    """

    def __init__(self, spec: BaselineSpec) -> None:
        super().__init__()
        self.geometry = Geometry(TILE, spec.resize_to, spec.pad_to, 32)
        self.net = smp.Unet(spec.encoder, encoder_weights=None, in_channels=1, classes=1)
        if spec.stride1:
            first = self.net.encoder.conv1
            self.net.encoder.conv1 = nn.Conv2d(1, first.out_channels, 3, padding=1, bias=False)
            self.net.encoder.maxpool = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.geometry.to_tile(self.net(self.geometry.to_network(x)))


def synthetic(n: int, seed: int = 0) -> Data:
    """``n`` noise tiles ``uint8`` and masks: half empty, half salt below a random depth."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, TILE, TILE), dtype=np.uint8)
    depth = rng.integers(10, 90, n)[:, None, None]
    masks = (np.arange(TILE)[None, :, None] >= depth) & (np.arange(n) % 2 == 1)[:, None, None]
    return images, np.broadcast_to(masks, images.shape).astype(np.uint8)


def sync(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


class Timed:
    """One model under one runtime, timed round after round (rates are images/s)."""

    def __init__(self, name: str | BaselineSpec, runtime: Runtime) -> None:
        torch.manual_seed(0)
        if isinstance(name, BaselineSpec):
            self.model, self.loss = Baseline(name), "bce_dice"
        else:
            self.model = build_model(name, TILE)
            deep = PRESETS[name].get("deep_supervision")
            self.loss = "deep_supervision" if deep else "bce_dice"
        self.runtime = runtime
        self.model.to(runtime.device)
        if runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.rounds: dict[str, list[float]] = {k: [] for k in RATES}

    def round(self, data: Data, args: Namespace, warmup: int) -> None:
        """Time ``args.steps`` training steps, then as many inference batches without/with TTA."""
        self.rounds["train_images_per_s"].append(self.train_rate(data, args, warmup))
        for key, tta in (("infer_images_per_s", ("none",)), ("infer_tta_images_per_s", TTA)):
            self.rounds[key].append(self.infer_rate(data, args, warmup, tta))

    def train_rate(self, data: Data, args: Namespace, warmup: int) -> float:
        images, masks = data
        runtime = self.runtime
        x = runtime.to(to_tensor(images[: args.batch_size]))
        y = to_tensor(masks[: args.batch_size] * 255).to(runtime.device)
        loss_fn, scaler = build_loss(self.loss), runtime.grad_scaler()
        self.model.train()
        for step in range(warmup + args.steps):
            if step == warmup:
                sync(runtime)
                start = time.perf_counter()
            train_step(self.model, x, y, loss_fn, self.optimizer, scaler, runtime)
        sync(runtime)
        return args.steps * args.batch_size / (time.perf_counter() - start)

    def infer_rate(self, data: Data, args: Namespace, warmup: int, tta: tuple[str, ...]) -> float:
        images, runtime, batch = data[0], self.runtime, args.batch_size
        if warmup:
            predict_probs(self.model, images[: batch * warmup], runtime, batch, tta)
        timed = images[: batch * args.steps]
        sync(runtime)
        start = time.perf_counter()
        predict_probs(self.model, timed, runtime, batch, tta)
        sync(runtime)
        return len(timed) / (time.perf_counter() - start)

    def row(self) -> dict[str, Any]:
        """Parameters, loss, the median rate of each kind and every round's rates."""
        row: dict[str, Any] = {
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "loss": self.loss,
        }
        row.update({k: _round(float(np.median(v))) for k, v in self.rounds.items()})
        row["rounds"] = {k: [_round(x) for x in v] for k, v in self.rounds.items()}
        return row


def compare(
    entries: dict[str, tuple[str | BaselineSpec, Runtime]], data: Data, args: Namespace
) -> dict[str, dict[str, Any]]:
    """Time the models of ``entries`` (label -> (name, runtime)) in turn, round after round.

    Interleaving a preset with its baseline puts both under the same machine state, so a busy
    neighbour or a clock change cannot favour one; medians over rounds smooth what is left. A
    model that fails is reported with its error, the others go on.
    """
    timed, rows = {}, {}
    for label, (name, runtime) in entries.items():
        try:
            timed[label] = Timed(name, runtime)
        except Exception as err:  # one failing model must not end the run
            rows[label] = _error(err)
    for r in range(args.rounds):
        for label, model in list(timed.items()):
            try:
                model.round(data, args, args.warmup if r == 0 else 0)
            except Exception as err:
                rows[label] = _error(err)
                del timed[label]
    for label, model in timed.items():
        rows[label] = model.row()
        print(label, json.dumps({k: v for k, v in rows[label].items() if k != "rounds"}))
    del timed
    torch.cuda.empty_cache()  # a no-op unless CUDA was used
    return rows


def _error(err: Exception) -> dict[str, str]:
    return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def ratios(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float] | None:
    """Training and inference images/s of ``row`` over ``base`` (None when either failed)."""
    if "error" in row or "error" in base:
        return None
    return {
        kind: round(row[f"{kind}_images_per_s"] / base[f"{kind}_images_per_s"], 3)
        for kind in ("train", "infer")
    }


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, help="default 16 on CPU, 64 on CUDA")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (batches) per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; rates are their medians")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before round 1")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", nargs="+", choices=sorted(ARCHITECTURES), metavar="NAME")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    parser.add_argument(
        "--plain",
        action=BooleanOptionalAction,
        help="also time each baseline in fp32/NCHW, smp's default (default: on CUDA only)",
    )
    parser.add_argument("--quick", action="store_true", help="1 warmup, 1 step, 1 round, batch 2")
    args = parser.parse_args(argv)
    runtime = resolve_runtime(args.device, "auto", "auto")
    if args.quick:
        args.warmup, args.steps, args.rounds, args.batch_size = 1, 1, 1, 2
    args.batch_size = args.batch_size or (64 if runtime.device.type == "cuda" else 16)
    args.warmup = max(args.warmup, 1)
    if runtime.device.type == "cpu":
        keep_freed_memory()  # as `saltseg train` and `predict` do on CPU
    if args.plain is None:
        args.plain = runtime.device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    data = synthetic(args.batch_size * max(args.steps, args.warmup))
    presets = args.only or list(ARCHITECTURES)
    plain = Runtime(runtime.device, None, channels_last=False)
    baselines = compare({REFERENCE.name: (REFERENCE, runtime)}, data, args)
    plain_baselines, models = {}, {}
    for name in presets:
        spec = matched_baseline(name)
        entries = {spec.name: (spec, runtime), name: (name, runtime)}
        if args.plain:
            entries["plain " + spec.name] = (spec, plain)
        rows = compare(entries, data, args)
        baselines.setdefault(spec.name, rows[spec.name])
        if args.plain:
            plain_baselines.setdefault(spec.name, rows["plain " + spec.name])
        row = rows[name]
        row["baseline"] = spec.name
        row["ratio_to_baseline"] = ratios(row, rows[spec.name])
        if args.plain:
            row["ratio_to_plain_baseline"] = ratios(row, rows["plain " + spec.name])
        row["ratio_to_reference"] = ratios(row, baselines[REFERENCE.name])
        models[name] = row
    amp = runtime.amp_dtype
    result = {
        "models": models,
        "baselines": baselines,
        "plain_baselines": plain_baselines or None,
        "reference": REFERENCE.name,
        "settings": {
            "device": str(runtime.device),
            "amp_dtype": str(amp).removeprefix("torch.") if amp else None,
            "channels_last": runtime.channels_last,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "threads": torch.get_num_threads(),
            "optimizer": "adam",
            "tta": list(TTA),
            "quick": args.quick,
            "segmentation_models_pytorch": version("segmentation-models-pytorch"),
        },
        "goal": GOAL,
    }
    train, infer = (
        [r["ratio_to_baseline"][k] for r in models.values()] for k in ("train", "infer")
    )
    write_result(
        "presets",
        result,
        args.out,
        headline=f"{runtime.device.type}, against the baseline: train {min(train):.2f}x-"
        f"{max(train):.2f}x, predict {min(infer):.2f}x-{max(infer):.2f}x ({len(models)} models)",
    )


if __name__ == "__main__":
    main()
