"""Give each concurrent job a GPU slot: the first free one, claimed with an exclusive file lock.

Snakemake's ``--resources gpu=S`` bounds how many jobs run at once but does not say which device
each one gets. With N visible GPUs and ``jobs_per_gpu`` k, a job calls :func:`claim_gpu`: it
locks the first free slot file ``<lock_dir>/gpu<i>.lock`` among the N*k slots (``fcntl.flock``,
released by the kernel even when the job is killed) and sets ``CUDA_VISIBLE_DEVICES=i // k``
before CUDA starts, so the job sees its device as ``cuda:0`` and shares it with at most k - 1
other jobs (each capping its memory to 1/k of it: :func:`cap_memory_share`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "saltseg-gpu-slots"


@contextlib.contextmanager
def claim_gpu(
    n_gpus: int, lock_dir: str | Path = DEFAULT_LOCK_DIR, jobs_per_gpu: int = 1
) -> Iterator[int | None]:
    """Hold a free slot in ``0..n_gpus*jobs_per_gpu-1`` for the block, exposing only its device
    (slot ``i`` runs on GPU ``i // jobs_per_gpu``).

    Yields the slot, or None when ``n_gpus`` is 0 (CPU runs) or when the scheduler already chose
    the devices (``CUDA_VISIBLE_DEVICES`` set, as SLURM does): the environment is then left alone.

    Raises:
        ValueError: ``jobs_per_gpu`` below 1.
        RuntimeError: every slot is held, i.e. more jobs run than ``--resources gpu=S`` allows.
    """
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu: expected an integer >= 1, got {jobs_per_gpu}")
    if n_gpus <= 0 or os.environ.get("CUDA_VISIBLE_DEVICES"):
        yield None
        return
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    n_slots = n_gpus * jobs_per_gpu
    for slot in range(n_slots):
        handle = open(lock_dir / f"gpu{slot}.lock", "w")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot // jobs_per_gpu)
        try:
            yield slot
        finally:
            del os.environ["CUDA_VISIBLE_DEVICES"]
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(
        f"all {n_slots} GPU slots in {lock_dir} are held ({n_gpus} GPUs x {jobs_per_gpu} jobs): "
        f"run with --resources gpu={n_slots} or fewer concurrent jobs"
    )


def claimed_device(device):
    """``device``, or the claimed GPU by index where CUDA started before the claim.

    CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when it starts. Counting the GPUs for the slots
    asks NVML and leaves CUDA unstarted; where NVML fails, torch asks CUDA itself, which then
    sees every GPU and would put every job on GPU 0. Such a job still sees more than one device
    after its claim: it is pointed at its slot's GPU by index instead, made the current device
    (logged once).
    """
    if getattr(device, "type", "cpu") != "cuda" or device.index is not None:
        return device
    import torch

    claimed = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if not claimed.isdigit() or torch.cuda.device_count() <= 1:
        return device
    log.warning(
        "CUDA started before this job's GPU slot was claimed (NVML unavailable?) and sees "
        "%d GPUs: running on cuda:%s by index",
        torch.cuda.device_count(),
        claimed,
    )
    torch.cuda.set_device(int(claimed))  # streams and graphs follow the current device
    return torch.device("cuda", int(claimed))


def cap_memory_share(device, jobs_per_gpu: int) -> float | None:
    """Cap this process's CUDA caching allocator at ``1/jobs_per_gpu`` of ``device``'s memory,
    so that the jobs sharing a GPU cannot starve each other. Returns the fraction set (None on
    CPU or with one job per GPU)."""
    if jobs_per_gpu <= 1 or getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    fraction = 1.0 / jobs_per_gpu
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(fraction, index)  # wants an indexed device
    log.info(
        "sharing the GPU with up to %d jobs: memory capped at %.0f %%",
        jobs_per_gpu - 1,
        100 * fraction,
    )
    return fraction
