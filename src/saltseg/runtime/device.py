"""Device, precision and memory-format choices, made once from config."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from dataclasses import dataclass

import torch

from saltseg.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs.

    Attributes:
        device: ``cuda`` or ``cpu``.
        amp_dtype: the autocast dtype, or None for full precision. On CUDA bf16 where the GPU
            computes it natively, fp16 (with a gradient scaler) otherwise; on CPU bf16.
        channels_last: whether models and batches use the channels-last memory format.
        compile: whether training runs the model through ``torch.compile``.
        cuda_graphs: whether training steps are captured as CUDA graphs where a phase allows
            it (:mod:`saltseg.training.graphed`); only ever true on CUDA.
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool = False
    cuda_graphs: bool = False

    def autocast(self, cache: bool = True):
        """Mixed precision for the block (``cache``: reuse each weight's cast within it; off
        for a CUDA graph capture, which must record the casts)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=cache)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def to(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def resolve_runtime(
    device: str = "auto",
    amp: str = "auto",
    channels_last: str = "auto",
    compile: bool = False,
    cuda_graphs: str = "auto",
) -> Runtime:
    """Turn config words into a :class:`Runtime`.

    Args:
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``auto`` (on for CUDA, and for CPUs with AMX tiles, whose bf16 matrix units train
            the ``cpu`` profile's net ~1.4x and predict ~1.5x faster than fp32; without AMX bf16
            is slower on CPU), ``true`` or ``false``.
        channels_last: ``auto`` (on: cuDNN and oneDNN convolutions are both faster in NHWC; on
            2 CPU threads a resnet18 U-Net trains ~20% and predicts ~30% faster), ``true`` or
            ``false``.
        compile: ``torch.compile`` the model for training.
        cuda_graphs: ``auto`` (on for CUDA, off with ``compile``), ``true`` (CUDA only) or
            ``false``: capture each training step as one CUDA graph.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", f"{device!r} asked for, but torch sees no CUDA device")
    on_cuda = dev.type == "cuda"
    use_amp = (on_cuda or cpu_has_amx()) if amp == "auto" else _flag("amp", amp)
    dtype = None
    if use_amp:
        dtype = torch.bfloat16 if not on_cuda or native_bf16(dev) else torch.float16
    use_cl = channels_last == "auto" or _flag("channels_last", channels_last)
    graphs = on_cuda and not compile if cuda_graphs == "auto" else _flag("cuda_graphs", cuda_graphs)
    if graphs and not on_cuda:
        raise InputError("cuda_graphs", f"true needs a CUDA device, got device {device!r}")
    return Runtime(dev, dtype, use_cl, compile, graphs)


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes in bf16 natively (compute capability 8.0 and later:
    A100, RTX 30xx, H100). Older GPUs (V100, T4) emulate bf16 far slower than fp16, which
    torch's ``is_bf16_supported()`` counts as support; this does not. Says which it chose."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    native = major >= 8
    if not native:
        log.info(
            "amp: %s (sm_%d%d) has no native bf16: training in fp16 with a gradient scaler "
            "(set runtime.amp: false for fp32)",
            torch.cuda.get_device_name(index),
            major,
            minor,
        )
    return native


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), as torch reports."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of giving it back (CPU runs).

    Above its mmap threshold (32 MiB at most) glibc maps every allocation afresh and unmaps it on
    free, so each training step page-faults its large activations again. With mmap off and no
    trimming, tensors come from a heap that stays mapped: on 2 CPU threads training steps at
    224 px were 13% (smp Unet-resnext50) to 27% (b.e.s.) faster. The process keeps the memory it
    freed, so its resident size stays near its peak. Process-wide: call it once, before the
    model runs.

    Returns:
        Whether glibc took the settings (False where there is no glibc ``mallopt``).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _flag(name: str, value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value not in ("true", "false"):
        raise InputError(f"{name}", f"expected auto, true or false, got {value!r}")
    return value == "true"
