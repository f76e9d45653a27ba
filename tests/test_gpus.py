"""GPU slot assignment, tested without a GPU: each job process gets its own device index."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from saltseg.runtime import gpus
from saltseg.runtime.gpus import claim_gpu
from saltseg.runtime.job import job_runtime

SRC = Path(gpus.__file__).resolve().parents[2]  # the package under test, not another install

HOLD = """
import os, sys, time
from saltseg.runtime.gpus import claim_gpu
with claim_gpu(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])) as slot:
    print(slot, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    time.sleep(60)
"""


@pytest.fixture(autouse=True)
def no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def start_job(n_gpus: int, lock_dir, jobs_per_gpu: int = 1) -> tuple[subprocess.Popen, str]:
    """A process that claims a slot and holds it; returns it and the 'slot device' it printed."""
    job = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(n_gpus), str(lock_dir), str(jobs_per_gpu)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    return job, job.stdout.readline().strip()


def test_concurrent_jobs_get_distinct_devices_and_a_kill_frees_one(tmp_path):
    jobs = [start_job(3, tmp_path) for _ in range(3)]
    try:
        assert [seen for _, seen in jobs] == ["0 0", "1 1", "2 2"]
        with pytest.raises(RuntimeError, match="all 3 GPU slots"):
            with claim_gpu(3, tmp_path):
                pass
        jobs[1][0].send_signal(signal.SIGKILL)  # kill -9: the kernel drops its lock
        jobs[1][0].wait()
        with claim_gpu(3, tmp_path) as slot:
            assert slot == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    finally:
        for job, _ in jobs:
            job.kill()
            job.wait()


def test_cpu_runs_and_scheduler_choices_are_left_alone(tmp_path, monkeypatch):
    with claim_gpu(0, tmp_path) as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    with claim_gpu(2, tmp_path) as slot:
        assert slot is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_jobs_per_gpu_share_devices_in_order(tmp_path):
    """gpu=4 slots on a faked 2-GPU machine with 2 jobs per GPU: slots 0,1 on GPU 0, 2,3 on 1."""
    jobs = [start_job(2, tmp_path, jobs_per_gpu=2) for _ in range(4)]
    try:
        assert [seen for _, seen in jobs] == ["0 0", "1 0", "2 1", "3 1"]
        with pytest.raises(RuntimeError, match=r"all 4 GPU slots .*2 GPUs x 2 jobs.*gpu=4"):
            with claim_gpu(2, tmp_path, jobs_per_gpu=2):
                pass
        jobs[2][0].send_signal(signal.SIGKILL)
        jobs[2][0].wait()
        with claim_gpu(2, tmp_path, jobs_per_gpu=2) as slot:
            assert slot == 2 and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    finally:
        for job, _ in jobs:
            job.kill()
            job.wait()


def test_jobs_per_gpu_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="jobs_per_gpu: expected an integer >= 1, got 0"):
        with claim_gpu(2, tmp_path, jobs_per_gpu=0):
            pass


def test_memory_share_is_capped_only_for_shared_cuda_devices():
    import torch

    assert gpus.cap_memory_share(torch.device("cpu"), 4) is None
    assert gpus.cap_memory_share(torch.device("cuda"), 1) is None


class FakeCuda:
    """Just enough of ``torch.cuda`` for the runtime set-up to run as on a GPU machine, with
    torch's own rules where they matter (``_get_device_index`` of the memory cap)."""

    def __init__(self, monkeypatch, capability=(9, 0), name="NVIDIA H100"):
        import torch
        from torch.cuda._utils import _get_device_index

        self.fractions = []

        def set_fraction(fraction, device=None):  # what torch does first with ``device``
            self.fractions.append((fraction, _get_device_index(device)))

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", set_fraction)
        self.current = []
        monkeypatch.setattr(torch.cuda, "set_device", self.current.append)


def runtime_args(**changes):
    import argparse

    settings = dict(
        threads=None,
        device="auto",
        amp="auto",
        channels_last="auto",
        compile="false",
        cuda_graphs="auto",
        jobs_per_gpu=5,
    )
    return argparse.Namespace(**{**settings, **changes})


def test_the_memory_cap_gets_an_indexed_device_the_way_cli_sets_up_a_job(monkeypatch):
    """``--device auto`` resolves to ``cuda`` without an index, which
    ``set_per_process_memory_fraction`` refuses (issue 44's second fault)."""
    import torch

    fake = FakeCuda(monkeypatch)
    runtime = job_runtime(runtime_args())
    assert runtime.device == torch.device("cuda") and runtime.cuda_graphs
    assert fake.fractions == [(0.2, 0)]
    assert gpus.cap_memory_share(torch.device("cuda:1"), 4) == 0.25
    assert fake.fractions[-1] == (0.25, 1)


@pytest.mark.parametrize(
    "capability, name, dtype",
    [((9, 0), "NVIDIA H100", "bfloat16"), ((8, 0), "A100", "bfloat16"), ((7, 5), "T4", "float16")],
)
def test_amp_auto_takes_bf16_only_where_the_gpu_computes_it(
    monkeypatch, caplog, capability, name, dtype
):
    """torch's ``is_bf16_supported()`` counts emulated bf16 (a T4 or V100 trains it far slower
    than fp16): those get fp16 with the gradient scaler, and say so."""
    import torch

    from saltseg.runtime.device import resolve_runtime

    FakeCuda(monkeypatch, capability, name)
    caplog.set_level("INFO", logger="saltseg.runtime.device")
    runtime = resolve_runtime("auto")
    assert runtime.amp_dtype == getattr(torch, dtype)
    assert runtime.grad_scaler().is_enabled() == (dtype == "float16")
    said = [r.getMessage() for r in caplog.records]
    if dtype == "float16":
        assert said == [
            f"amp: {name} (sm_75) has no native bf16: training in fp16 with a gradient scaler "
            "(set runtime.amp: false for fp32)"
        ]
    else:
        assert said == []


def test_the_memory_cap_on_a_real_gpu_from_an_unindexed_device():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    assert gpus.cap_memory_share(torch.device("cuda"), 5) == 0.2


@pytest.mark.parametrize("seen, device, index", [(1, "cuda", 0), (4, "cuda:2", 2)])
def test_a_job_whose_cuda_started_before_its_claim_runs_on_its_gpu_by_index(
    monkeypatch, caplog, seen, device, index
):
    """Where NVML fails, counting the GPUs starts CUDA before the slot sets
    CUDA_VISIBLE_DEVICES=2, so CUDA still sees all 4: the job must not land on GPU 0."""
    import torch

    fake = FakeCuda(monkeypatch)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: seen)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # what the slot claimed
    caplog.set_level("WARNING", logger="saltseg.runtime.gpus")
    runtime = job_runtime(runtime_args())
    assert runtime.device == torch.device(device)
    assert fake.fractions == [(0.2, index)]
    assert fake.current == ([2] if seen > 1 else [])
    assert len(caplog.records) == (seen > 1)
