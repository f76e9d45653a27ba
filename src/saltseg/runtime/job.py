"""One job's runtime from its command line: CPU threads, device and precision, its GPU slot.

Imported by the CLI at start, so torch is imported only when a job asks for its runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def capped_threads(threads: int | None) -> int | None:
    """``threads`` (0 or None: torch's default), at most the CPUs this job may use; a cap is
    logged once, as torch would otherwise run more threads than cores and each would wait."""
    usable = usable_cpus()
    if threads and threads > usable:
        log.info("--threads %d capped at %d: the CPUs this job may use", threads, usable)
        return usable
    return threads


def job_runtime(args: argparse.Namespace):
    """The runtime options as a ``Runtime``: threads capped, CPU memory kept for reuse, the
    claimed GPU (:func:`~saltseg.runtime.gpus.claimed_device`) and its memory share capped."""
    import torch

    from saltseg.runtime.device import keep_freed_memory, resolve_runtime
    from saltseg.runtime.gpus import cap_memory_share, claimed_device

    threads = capped_threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    runtime = resolve_runtime(
        args.device, args.amp, args.channels_last, args.compile == "true", args.cuda_graphs
    )
    if runtime.device.type == "cpu":
        keep_freed_memory()
    runtime = dataclasses.replace(runtime, device=claimed_device(runtime.device))
    cap_memory_share(runtime.device, args.jobs_per_gpu)
    return runtime


def gpu_slots(device: str) -> int:
    """GPUs to share between concurrent jobs: all visible ones, unless a device is pinned."""
    if device not in ("auto", "cuda"):
        return 0
    import torch

    return torch.cuda.device_count()  # asks NVML; CUDA itself starts only after the claim


def claim_job_gpu(args: argparse.Namespace):
    """Held around the step: one GPU slot, claimed before CUDA starts (so before
    :func:`job_runtime`)."""
    from saltseg.runtime.gpus import claim_gpu

    return claim_gpu(gpu_slots(args.device), jobs_per_gpu=args.jobs_per_gpu)
