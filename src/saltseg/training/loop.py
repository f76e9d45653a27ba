"""The training loop: phases of epochs, validation each epoch, snapshots, resume after a kill."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from saltseg.data.augment import build_augment
from saltseg.data.batch_augment import DeviceBatches, build_batch_augment, random_windows
from saltseg.data.dataset import TileDataset
from saltseg.data.kaggle import Tiles
from saltseg.errors import InputError
from saltseg.inference.predict import predict_probs
from saltseg.losses import build_loss
from saltseg.metrics import competition_metric
from saltseg.runtime.device import Runtime
from saltseg.training import checkpoint
from saltseg.training.graphed import GraphedStep, capture_blocker
from saltseg.training.optim import (
    budget_epochs,
    build_optimizer,
    build_schedule,
    cycle_epochs,
    hold_lr_in_tensors,
    slot_minutes,
    takes_snapshot,
)

log = logging.getLogger(__name__)

#: training steps between two reads of the running loss (each read waits for the device)
CHECK_EVERY = 20


def fit(
    model: torch.nn.Module,
    params: dict[str, Any],
    train: Tiles | dict[str, Tiles],
    val: Tiles,
    runtime: Runtime,
    work_dir: str | Path,
    seed: int,
    num_workers: int = 0,
    predict_forwards: int = 0,
    predict_batch_size: int = 64,
) -> dict[str, Any]:
    """Train ``model`` through ``params["phases"]``, resuming from ``work_dir/checkpoint.pt``.

    Args:
        model: the network (moved to ``runtime.device`` here; compiled for training when
            ``runtime.compile``).
        params: the model's config: ``phases`` (each loss, optimizer, lr, schedule, epochs or a
            ``minutes`` budget, batch_size, snapshots, optional ``ema`` decay,
            ``empty_weight`` and ``side_weight``), ``augment``, ``val_every`` and an optional
            ``slot_minutes`` that the budget phases share with the fold's prediction.
        train: the labelled tiles, or the tiles of each phase ``data`` source (``train``,
            ``pseudo``, ``train+pseudo``).
        val: labelled tiles scored every ``val_every`` epochs, after the first epoch of a
            budget phase and at the end of every phase (metric at 0.5, no TTA).
        runtime: device, precision, memory format.
        work_dir: where ``checkpoint.pt`` lives between epochs.
        seed: seeds the batch order and augmentations of every epoch, so a resumed run
            replays the same epochs.
        num_workers: DataLoader processes (persistent within a phase; pinned memory on CUDA).
        predict_forwards: forward passes of the prediction that shares ``slot_minutes`` with
            this training; its seconds are estimated at the pace of the latest validation.
        predict_batch_size: the validation's batch size, the prediction's, so that the two
            run at the same pace.
    Returns:
        ``{"snapshots": [state_dict, ...], "history": [row per epoch]}``; the snapshots are the
        weights at the end of each cosine cycle of phases with ``snapshots > 0``, or the final
        weights when no phase takes any (the averaged weights in phases with ``ema``).
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
    augment, batch_augment = _augmentations(params)
    tile = model.geometry.tile  # masks given as context windows are cut to it for the loss
    val_every = params.get("val_every", 1)
    for p, phase in enumerate(params["phases"]):
        if p < state["phase"]:
            continue
        resuming = p == state["phase"] and state["epoch"] > 0
        data = phase.get("data", "train")
        if data not in sources:
            raise InputError(f"phase {p}", f"data: expected one of {sorted(sources)}, got {data!r}")
        dataset = TileDataset(sources[data].images, sources[data].masks, augment)
        if not len(dataset):
            log.warning("phase %d: no %s tiles (no confident pseudo-labels?), skipped", p, data)
            continue
        phase = dict(phase)
        if phase.get("crop"):
            model.geometry.check_window(phase["crop"], f"phase {p} crop")
        if "minutes" in phase:  # sized by its epochs, the size kept for a resume
            phase["epochs"] = state.get("phase_epochs") if resuming else None
        loss_fn = build_loss(
            phase["loss"], phase.get("empty_weight", 0.0), phase.get("side_weight", 0.0)
        )
        scaler = runtime.grad_scaler()
        blocker = capture_blocker(phase, runtime, scaler) if runtime.cuda_graphs else "off"
        if runtime.cuda_graphs and blocker:
            log.info("phase %d: training steps run eagerly, not as CUDA graphs: %s", p, blocker)
        optimizer = build_optimizer(model, phase, graphed=blocker is None)
        schedule = build_schedule(optimizer, phase)
        ema = build_ema(model, phase.get("ema"))
        if resuming:
            optimizer.load_state_dict(state["optimizer"])
            if blocker is None:
                hold_lr_in_tensors(optimizer)
            schedule.load_state_dict(state["schedule"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
        if batch_augment is not None:
            source = sources[data]
            loader = DeviceBatches(
                source.images, source.masks, phase["batch_size"], runtime.device, batch_augment
            )
        else:
            loader = _loader(dataset, phase["batch_size"], runtime, num_workers)
        weights = ema.module if ema is not None else model  # what is validated and kept
        step = partial(_step_on, forward, loss_fn, optimizer, scaler, runtime)
        if blocker is None:
            step = GraphedStep(step)
        epoch = state["epoch"] if resuming else 0
        while epoch < (phase["epochs"] or 1):
            epoch_seed = seed * 100_003 + p * 1_009 + epoch
            loader.generator.manual_seed(epoch_seed)
            if dataset.augment is not None:  # None on the batch path
                dataset.augment.set_random_seed(epoch_seed)
            model.train()
            lr = float(optimizer.param_groups[0]["lr"])
            row = {"phase": p, "epoch": epoch, "data": data, "lr": lr}
            crop = _Windows(phase.get("crop"), epoch_seed)
            row.update(_epoch(step, forward, loader, runtime, row, ema, tile, crop))
            plateau = phase.get("schedule") == "plateau"
            sized = "minutes" in phase
            if sized and (epoch == 0 or epoch < cycle_epochs(phase)):  # in its first cycle
                rows = [*state["history"], row]
                minutes = _budget_minutes(params, p, rows, len(val), predict_forwards)
                _size(phase, p, row, state["history"], 1 if plateau else val_every, minutes)
            last = epoch + 1 == phase["epochs"]
            if plateau or (sized and epoch == 0) or last or (epoch + 1) % val_every == 0:
                row.update(_validate(weights, val, loss_fn, runtime, predict_batch_size))
            _step_schedule(schedule, row.get("val_loss"))
            state["history"].append(row)
            log.info(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
            if takes_snapshot(phase, epoch):
                state["snapshots"].append(_cpu_state(weights))
            state.update(
                phase=p,
                epoch=epoch + 1,
                phase_epochs=phase["epochs"],
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                schedule=schedule.state_dict(),
                scaler=scaler.state_dict(),
                ema=ema.state_dict() if ema is not None else None,
                rng=torch.get_rng_state(),
                key=key,
            )
            checkpoint.save(path, state)
            epoch += 1
        if ema is not None:  # the next phase, and the final weights, start from the average
            model.load_state_dict(ema.module.state_dict())
        state.update(phase=p + 1, epoch=0)
    snapshots = state["snapshots"] or [_cpu_state(model)]
    return {"snapshots": snapshots, "history": state["history"]}


def _augmentations(params: dict[str, Any]) -> tuple[Any, Any]:
    """``(per-tile albumentations pipeline, batch augmentation)``: exactly one is used.

    ``augment_on``: ``batch`` (whole batches on the device, :mod:`saltseg.data.batch_augment`),
    ``tile`` (albumentations per tile in the DataLoader), ``auto`` (batch when every transform
    of the list has a batch form).
    """
    spec, mode = params.get("augment", []), params.get("augment_on", "auto")
    batch = build_batch_augment(spec) if mode != "tile" else None
    if mode == "batch" and batch is None:
        raise InputError(
            "augment_on", "batch: a transform of the augment list has no batch form (use tile)"
        )
    if batch is not None:
        return None, batch
    log.info("augmenting per tile with albumentations (augment_on: %s)", mode)
    return build_augment(spec), None


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


def build_ema(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (None without ``decay``).

    Updated after every optimiser step: ``avg = decay * avg + (1 - decay) * weights``.
    """
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_step(forward, x, y, loss_fn, optimizer, scaler, runtime: Runtime) -> torch.Tensor:
    """One optimiser step on a batch already on the device (autocast, scaled backward); returns
    the detached loss without waiting for it, so that a CUDA graph can capture the step (the
    autocast weight cache is off: a capture must record the casts)."""
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast(cache=False):
        loss = loss_fn(forward(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _step_on(forward, loss_fn, optimizer, scaler, runtime, x, y) -> torch.Tensor:
    """:func:`train_step` with the batch last (looked up at call time, so tests can wrap it)."""
    return train_step(forward, x, y, loss_fn, optimizer, scaler, runtime)


class _Windows:
    """A phase's ``crop``: random windows of ``side`` px from each batch (None: whole tiles),
    drawn from a generator seeded per epoch so that a resumed run replays them."""

    def __init__(self, side: int | None, seed: int) -> None:
        self.side, self.generator = side, torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return random_windows(x, y, self.side, self.generator) if self.side else (x, y)


def _epoch(step, forward, loader, runtime, row, ema, tile: int, crop: _Windows) -> dict[str, float]:
    """One pass over the training set: mean loss, seconds, images/s, and the seconds the epoch
    would take at the pace after its first step (``steady_seconds``: no warm-up, no compiling).

    ``step(x, y)`` trains on a batch (eagerly or as a CUDA graph replay) and returns its loss,
    summed on the device and read back every :data:`CHECK_EVERY` steps and at the end, where a
    loss that is not finite stops the run. Masks wider than ``tile`` (context windows,
    augmented with their images) are cut to the central tile, which is what the model outputs;
    ``crop`` then cuts training windows."""
    start, count = time.perf_counter(), 0
    total = torch.zeros((), device=runtime.device)
    first_seconds, first_count = 0.0, 0
    batches = tqdm(
        loader,
        desc=f"phase {row['phase']} epoch {row['epoch']}",
        leave=False,
        disable=not sys.stderr.isatty(),
    )
    for i, (x, y) in enumerate(batches):
        x, y = x.to(runtime.device, non_blocking=True), y.to(runtime.device, non_blocking=True)
        if y.shape[-1] > tile:
            side = (y.shape[-1] - tile) // 2
            y = y[..., side : side + tile, side : side + tile]
        x, y = crop(x, y)
        x = runtime.to(x)
        total += step(x, y).float() * len(x)
        if ema is not None:
            ema.update_parameters(forward)
        count += len(x)
        if i == 0 or (i + 1) % CHECK_EVERY == 0:
            batches.set_postfix(loss=f"{_finite_mean(total, count, row):.4f}", refresh=False)
            if i == 0:
                first_seconds, first_count = time.perf_counter() - start, count
    mean = _finite_mean(total, count, row)
    seconds = time.perf_counter() - start
    steady = seconds
    if count > first_count > 0:
        steady = (seconds - first_seconds) * count / (count - first_count)
    return {
        "train_loss": mean,
        "seconds": seconds,
        "steady_seconds": steady,
        "images_per_s": count / seconds,
    }


def _finite_mean(total: torch.Tensor, count: int, row: dict[str, Any]) -> float:
    """The mean loss so far (waits for the device); stops the run when it is not finite."""
    mean = float(total) / max(count, 1)
    if not np.isfinite(mean):
        raise InputError(
            f"phase {row['phase']} epoch {row['epoch']}",
            f"the training loss is {mean} (diverged: lower the lr, or use amp: false)",
        )
    return mean


@torch.inference_mode()
def _validate(model, val: Tiles, loss_fn, runtime: Runtime, batch_size: int) -> dict[str, float]:
    start = time.perf_counter()
    probs = predict_probs(model, val.images, runtime, batch_size)
    logits = torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6))[:, None]
    loss = float(loss_fn(logits, torch.from_numpy(val.masks).float()[:, None]))
    return {
        "val_loss": loss,
        "val_metric": competition_metric(val.masks, probs > 0.5),
        "val_seconds": time.perf_counter() - start,
    }


def _budget_minutes(
    params: dict[str, Any], p: int, rows: list[dict], n_val: int, predict_forwards: int
) -> float:
    """Budget phase ``p``'s minutes: its own ``minutes``, or with ``slot_minutes`` its share of
    what the slot leaves after the earlier phases and the prediction (:func:`slot_minutes`), the
    prediction timed at the pace of the latest validation (none yet: not counted)."""
    phases = params["phases"]
    if not params.get("slot_minutes"):
        return phases[p]["minutes"]
    vals = [r["val_seconds"] for r in rows if "val_seconds" in r]
    predict = vals[-1] / max(n_val, 1) * predict_forwards if vals else 0.0
    before = _seconds(r for r in rows if r["phase"] < p)
    return slot_minutes(phases, p, params["slot_minutes"], before, predict)


def _size(
    phase: dict[str, Any],
    p: int,
    row: dict[str, Any],
    history: list[dict],
    val_every: int,
    minutes: float,
) -> None:
    """Set the epochs of budget phase ``p`` to fit ``minutes`` from the seconds its epochs took
    so far (recorded in ``row`` as ``budget_minutes``).

    The time left is spent at the median pace of the last three epochs after their first step
    (warm-up, compilation, a job starting next to this one pass), plus the validations.
    """
    rows = [r for r in history if r["phase"] == p] + [row]
    vals = [r["val_seconds"] for r in rows if "val_seconds" in r]
    val = vals[-1] if vals else 0.0
    spent = _seconds(rows) + val  # + the last check
    pace = float(np.median([r["steady_seconds"] for r in rows[-3:]])) + val / val_every
    epochs = budget_epochs({**phase, "minutes": minutes}, len(rows), spent, pace)
    if epochs != phase["epochs"]:
        log.info("phase %d: %.1f min fit %d epochs of %.1f s", p, minutes, epochs, pace)
    phase["epochs"] = epochs
    row["budget_minutes"] = minutes


def _seconds(rows: Iterable[dict]) -> float:
    """Seconds the epochs of ``rows`` took, their validations included."""
    return sum(r["seconds"] + r.get("val_seconds", 0.0) for r in rows)


def _step_schedule(schedule, val_loss: float) -> None:
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
