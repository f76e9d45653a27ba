"""The training loop: phases of epochs, validation each epoch, snapshots, resume after a kill."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from saltseg.data.augment import build_augment
from saltseg.data.dataset import TileDataset
from saltseg.data.kaggle import Tiles
from saltseg.inference.predict import predict_probs
from saltseg.losses import build_loss
from saltseg.metrics import competition_metric
from saltseg.training import checkpoint
from saltseg.training.device import Runtime
from saltseg.training.optim import build_optimizer, build_schedule, takes_snapshot

log = logging.getLogger(__name__)


def fit(
    model: torch.nn.Module,
    params: dict[str, Any],
    train: Tiles | dict[str, Tiles],
    val: Tiles,
    runtime: Runtime,
    work_dir: str | Path,
    seed: int,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Train ``model`` through ``params["phases"]``, resuming from ``work_dir/checkpoint.pt``.

    Args:
        model: the network (moved to ``runtime.device`` here; compiled for training when
            ``runtime.compile``).
        params: the model's config: ``phases`` (each loss, optimizer, lr, schedule, epochs,
            batch_size, snapshots) and ``augment``.
        train: the labelled tiles, or the tiles of each phase ``data`` source (``train``,
            ``pseudo``, ``train+pseudo``).
        val: labelled tiles scored after every epoch (metric at 0.5, no TTA).
        runtime: device, precision, memory format.
        work_dir: where ``checkpoint.pt`` lives between epochs.
        seed: seeds the batch order and augmentations of every epoch, so a resumed run
            replays the same epochs.
        num_workers: DataLoader processes (persistent within a phase; pinned memory on CUDA).
    Returns:
        ``{"snapshots": [state_dict, ...], "history": [row per epoch]}``; the snapshots are the
        weights at the end of each cosine cycle of phases with ``snapshots > 0``, or the final
        weights when no phase takes any.
    """
    path = Path(work_dir) / "checkpoint.pt"
    sources = train if isinstance(train, dict) else {"train": train}
    sizes = {name: len(tiles) for name, tiles in sorted(sources.items())}
    shapes = [[name, list(t.shape)] for name, t in model.state_dict().items()]
    key = checkpoint.params_key(
        {"params": params, "seed": seed, "n_train": sizes, "weights": shapes}
    )  # a checkpoint of another run, or of a network that code changes reshaped, is not resumed
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if runtime.compile else model
    state = checkpoint.load(path, key) or {"phase": 0, "epoch": 0, "snapshots": [], "history": []}
    if state["phase"] or state["epoch"]:
        model.load_state_dict(state["model"])
        torch.set_rng_state(state["rng"])
        log.info("resuming at phase %d epoch %d from %s", state["phase"], state["epoch"], path)
    augment = build_augment(params.get("augment", []))
    for p, phase in enumerate(params["phases"]):
        if p < state["phase"]:
            continue
        data = phase.get("data", "train")
        if data not in sources:
            raise ValueError(f"phase {p}: data: expected one of {sorted(sources)}, got {data!r}")
        dataset = TileDataset(sources[data].images, sources[data].masks, augment)
        if not len(dataset):
            log.warning("phase %d: no %s tiles (no confident pseudo-labels?), skipped", p, data)
            continue
        loss_fn = build_loss(phase["loss"])
        optimizer = build_optimizer(model, phase)
        schedule = build_schedule(optimizer, phase)
        scaler = runtime.grad_scaler()
        if p == state["phase"] and state["epoch"]:
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            scaler.load_state_dict(state["scaler"])
        loader = _loader(dataset, phase["batch_size"], runtime, num_workers)
        for epoch in range(state["epoch"] if p == state["phase"] else 0, phase["epochs"]):
            epoch_seed = seed * 100_003 + p * 1_009 + epoch
            loader.generator.manual_seed(epoch_seed)
            if dataset.augment is not None:
                dataset.augment.set_random_seed(epoch_seed)
            model.train()
            row = {"phase": p, "epoch": epoch, "data": data, "lr": optimizer.param_groups[0]["lr"]}
            row.update(_epoch(forward, loader, loss_fn, optimizer, scaler, runtime, row))
            row.update(_validate(model, val, loss_fn, runtime, phase["batch_size"]))
            _step(schedule, row["val_loss"])
            state["history"].append(row)
            log.info(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
            if takes_snapshot(phase, epoch):
                state["snapshots"].append(_cpu_state(model))
            state.update(
                phase=p,
                epoch=epoch + 1,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                schedule=schedule.state_dict(),
                scaler=scaler.state_dict(),
                rng=torch.get_rng_state(),
                key=key,
            )
            checkpoint.save(path, state)
        state.update(phase=p + 1, epoch=0)
    snapshots = state["snapshots"] or [_cpu_state(model)]
    return {"snapshots": snapshots, "history": state["history"]}


def _loader(dataset: TileDataset, batch_size: int, runtime: Runtime, workers: int) -> DataLoader:
    """One loader per phase: shuffled by its own generator (reseeded every epoch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) > batch_size,
        generator=torch.Generator(),
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers else None,
    )


def train_step(forward, x, y, loss_fn, optimizer, scaler, runtime: Runtime) -> torch.Tensor:
    """One optimiser step on a batch already on the device (autocast, scaled backward)."""
    with runtime.autocast():
        loss = loss_fn(forward(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def _epoch(forward, loader, loss_fn, optimizer, scaler, runtime, row) -> dict[str, float]:
    """One pass over the training set: mean loss, seconds, images/s."""
    start, total, count = time.perf_counter(), 0.0, 0
    batches = tqdm(
        loader,
        desc=f"phase {row['phase']} epoch {row['epoch']}",
        leave=False,
        disable=not sys.stderr.isatty(),
    )
    for x, y in batches:
        x, y = runtime.to(x), y.to(runtime.device, non_blocking=True)
        loss = train_step(forward, x, y, loss_fn, optimizer, scaler, runtime).item()
        if not np.isfinite(loss):
            raise ValueError(
                f"phase {row['phase']} epoch {row['epoch']}: the training loss is {loss} "
                "(diverged: lower the lr, or use amp: false)"
            )
        total += loss * len(x)
        count += len(x)
        batches.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    seconds = time.perf_counter() - start
    return {
        "train_loss": total / max(count, 1),
        "seconds": seconds,
        "images_per_s": count / seconds,
    }


@torch.inference_mode()
def _validate(model, val: Tiles, loss_fn, runtime: Runtime, batch_size: int) -> dict[str, float]:
    probs = predict_probs(model, val.images, runtime, batch_size)
    logits = torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6))[:, None]
    loss = float(loss_fn(logits, torch.from_numpy(val.masks).float()[:, None]))
    return {"val_loss": loss, "val_metric": competition_metric(val.masks, probs > 0.5)}


def _step(schedule, val_loss: float) -> None:
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(val_loss)
    else:
        schedule.step()


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    dataset = torch.utils.data.get_worker_info().dataset
    if dataset.augment is not None:
        dataset.augment.set_random_seed(seed)
