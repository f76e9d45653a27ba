"""Give each concurrent job its own GPU: the first free slot, claimed with an exclusive file lock.

Snakemake's ``--resources gpu=N`` bounds how many jobs run at once but does not say which device
each one gets. A job calls :func:`claim_gpu` with N: it locks the first free slot file
``<lock_dir>/gpu<i>.lock`` (``fcntl.flock``, released by the kernel even when the job is killed)
and sets ``CUDA_VISIBLE_DEVICES=i`` before CUDA starts, so the job sees its device as ``cuda:0``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "saltseg-gpu-slots"


@contextlib.contextmanager
def claim_gpu(n_gpus: int, lock_dir: str | Path = DEFAULT_LOCK_DIR) -> Iterator[int | None]:
    """Hold a free GPU slot in ``0..n_gpus-1`` for the block, exposing only that device.

    Yields the slot, or None when ``n_gpus`` is 0 (CPU runs) or when the scheduler already chose
    the devices (``CUDA_VISIBLE_DEVICES`` set, as SLURM does): the environment is then left alone.

    Raises:
        RuntimeError: every slot is held, i.e. more jobs run than ``--resources gpu=N`` allows.
    """
    if n_gpus <= 0 or os.environ.get("CUDA_VISIBLE_DEVICES"):
        yield None
        return
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(n_gpus):
        handle = open(lock_dir / f"gpu{slot}.lock", "w")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot)
        try:
            yield slot
        finally:
            del os.environ["CUDA_VISIBLE_DEVICES"]
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(
        f"all {n_gpus} GPU slots in {lock_dir} are held: run with --resources gpu={n_gpus} "
        "or fewer concurrent jobs"
    )
