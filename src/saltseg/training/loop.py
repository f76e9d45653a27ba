"""The training loop: phases of epochs, validation each epoch, snapshots, resume after a kill."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from saltseg.training.budget import phase_minutes, size_phase
from saltseg.training.graphed import GraphedStep, capture_blocker
from saltseg.training.optim import (
    build_optimizer,
    build_schedule,
    cycle_epochs,
    load_optimizer_state,
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
    sources = train if isinstance(train, dict) else {"train": train}
    run = _Run(
        model=model,
        forward=_placed(model, runtime),
        params=params,
        val=val,
        runtime=runtime,
        path=Path(work_dir) / "checkpoint.pt",
        key=_run_key(model, params, sources, seed),
        seed=seed,
        predict_forwards=predict_forwards,
        predict_batch_size=predict_batch_size,
    )
    state = _resumed(run)
    augment, batch_augment = _augmentations(params)
    for p, spec in enumerate(params["phases"]):
        if p < state["phase"]:
            continue
        data = spec.get("data", "train")
        if data not in sources:
            raise InputError(f"phase {p}", f"data: expected one of {sorted(sources)}, got {data!r}")
        if not len(sources[data]):
            log.warning("phase %d: no %s tiles (no confident pseudo-labels?), skipped", p, data)
            continue
        phase = _start_phase(
            run, p, spec, state, sources[data], augment, batch_augment, num_workers
        )
        _train_phase(run, phase, state)
        if phase.ema is not None:  # the next phase, and the final weights, start from the average
            model.load_state_dict(phase.ema.module.state_dict())
        state.update(phase=p + 1, epoch=0)
    snapshots = state["snapshots"] or [_cpu_state(model)]
    return {"snapshots": snapshots, "history": state["history"]}


@dataclass(frozen=True)
class _Run:
    """What every phase of one :func:`fit` shares."""

    model: torch.nn.Module
    forward: Callable  # the model, or its compiled form
    params: dict[str, Any]
    val: Tiles
    runtime: Runtime
    path: Path  # the checkpoint
    key: str  # what a checkpoint must match to be resumed
    seed: int
    predict_forwards: int
    predict_batch_size: int


@dataclass
class _Phase:
    """One phase in training: its settings (``epochs`` sized here for a budget phase), data,
    and the optimiser, schedule, scaler, EMA and step built for it."""

    index: int
    spec: dict[str, Any]
    data: str
    loader: Any  # DeviceBatches or a DataLoader
    augment: Any  # the per-tile pipeline (reseeded every epoch), None on the batch path
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _run_key(model: torch.nn.Module, params: dict, sources: dict[str, Tiles], seed: int) -> str:
    """A checkpoint of another run, or of a network that code changes reshaped, is not resumed."""
    sizes = {name: len(tiles) for name, tiles in sorted(sources.items())}
    shapes = [[name, list(t.shape)] for name, t in model.state_dict().items()]
    return checkpoint.params_key(
        {"params": params, "seed": seed, "n_train": sizes, "weights": shapes}
    )


def _placed(model: torch.nn.Module, runtime: Runtime) -> Callable:
    """Move ``model`` to the device and memory format; return what training calls."""
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if runtime.compile else model


def _resumed(run: _Run) -> dict[str, Any]:
    """The state of a killed run that matches ``run.key`` (its weights and RNG restored), or a
    fresh one."""
    state = checkpoint.load(run.path, run.key)
    if not state:
        return {"phase": 0, "epoch": 0, "snapshots": [], "history": []}
    if state["phase"] or state["epoch"]:
        run.model.load_state_dict(state["model"])
        torch.set_rng_state(state["rng"])
        log.info("resuming at phase %d epoch %d from %s", state["phase"], state["epoch"], run.path)
    return state


def _start_phase(
    run: _Run,
    p: int,
    spec: dict[str, Any],
    state: dict[str, Any],
    tiles: Tiles,
    augment: Any,
    batch_augment: Any,
    workers: int,
) -> _Phase:
    """Build phase ``p``: loss, optimiser, schedule, EMA, its step (a CUDA graph where it can
    be) and loader, with the killed run's optimiser state where it resumes mid-phase."""
    spec, runtime = dict(spec), run.runtime
    resuming = p == state["phase"] and state["epoch"] > 0
    if spec.get("crop"):
        run.model.geometry.check_window(spec["crop"], f"phase {p} crop")
    if "minutes" in spec:  # sized by its epochs, the size kept for a resume
        spec["epochs"] = state.get("phase_epochs") if resuming else None
    loss_fn = build_loss(spec["loss"], spec.get("empty_weight", 0.0), spec.get("side_weight", 0.0))
    scaler = runtime.grad_scaler()
    blocker = capture_blocker(spec, runtime, scaler) if runtime.cuda_graphs else "off"
    if runtime.cuda_graphs and blocker:
        log.info("phase %d: training steps run eagerly, not as CUDA graphs: %s", p, blocker)
    optimizer = build_optimizer(run.model, spec, graphed=blocker is None)
    schedule = build_schedule(optimizer, spec)
    ema = build_ema(run.model, spec.get("ema"))
    if resuming:
        load_optimizer_state(optimizer, state["optimizer"], graphed=blocker is None)
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    if batch_augment is not None:
        loader = DeviceBatches(
            tiles.images, tiles.masks, spec["batch_size"], runtime.device, batch_augment
        )
    else:
        dataset = TileDataset(tiles.images, tiles.masks, augment)
        loader = _loader(dataset, spec["batch_size"], runtime, workers)
    step = partial(_step_on, run.forward, loss_fn, optimizer, scaler, runtime)
    return _Phase(
        index=p,
        spec=spec,
        data=spec.get("data", "train"),
        loader=loader,
        augment=augment if batch_augment is None else None,
        loss_fn=loss_fn,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        ema=ema,
        step=GraphedStep(step, optimizer, f"phase {p}") if blocker is None else step,
    )


def _train_phase(run: _Run, phase: _Phase, state: dict[str, Any]) -> None:
    """Train ``phase`` epoch by epoch from where ``state`` stands, sizing a budget phase in its
    first cycle, validating, stepping the schedule, keeping snapshots and a checkpoint."""
    spec, p = phase.spec, phase.index
    weights = phase.ema.module if phase.ema is not None else run.model  # validated and kept
    val_every = run.params.get("val_every", 1)
    plateau, sized = spec.get("schedule") == "plateau", "minutes" in spec
    epoch = state["epoch"] if p == state["phase"] else 0
    while epoch < (spec["epochs"] or 1):
        epoch_seed = run.seed * 100_003 + p * 1_009 + epoch
        phase.loader.generator.manual_seed(epoch_seed)
        if phase.augment is not None:
            phase.augment.set_random_seed(epoch_seed)
        run.model.train()
        lr = float(phase.optimizer.param_groups[0]["lr"])
        row = {"phase": p, "epoch": epoch, "data": phase.data, "lr": lr}
        crop = _Windows(spec.get("crop"), epoch_seed)
        tile = run.model.geometry.tile  # masks given as context windows are cut to it
        row.update(
            _epoch(phase.step, run.forward, phase.loader, run.runtime, row, phase.ema, tile, crop)
        )
        if sized and (epoch == 0 or epoch < cycle_epochs(spec)):  # in its first cycle
            rows = [*state["history"], row]
            minutes = phase_minutes(run.params, p, rows, len(run.val), run.predict_forwards)
            size_phase(spec, p, row, state["history"], 1 if plateau else val_every, minutes)
        last = epoch + 1 == spec["epochs"]
        if plateau or (sized and epoch == 0) or last or (epoch + 1) % val_every == 0:
            row.update(
                _validate(weights, run.val, phase.loss_fn, run.runtime, run.predict_batch_size)
            )
        _step_schedule(phase.schedule, row.get("val_loss"))
        if isinstance(phase.step, GraphedStep):
            phase.step.follow_schedule()
        state["history"].append(row)
        log.info(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
        if takes_snapshot(spec, epoch):
            state["snapshots"].append(_cpu_state(weights))
        _save(run, phase, state, epoch + 1)
        epoch += 1


def _save(run: _Run, phase: _Phase, state: dict[str, Any], epoch: int) -> None:
    """Checkpoint everything a killed run needs to go on at ``epoch`` of ``phase``."""
    state.update(
        phase=phase.index,
        epoch=epoch,
        phase_epochs=phase.spec["epochs"],
        model=run.model.state_dict(),
        optimizer=phase.optimizer.state_dict(),
        schedule=phase.schedule.state_dict(),
        scaler=phase.scaler.state_dict(),
        ema=phase.ema.state_dict() if phase.ema is not None else None,
        rng=torch.get_rng_state(),
        key=run.key,
    )
    checkpoint.save(run.path, state)


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
