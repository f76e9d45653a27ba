"""A one-line description of a preset: size, input geometry, output shape and CPU forward time."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from saltseg.errors import InputError
from saltseg.models.model import build_model


def model_summary(
    preset: str,
    tile: int = 101,
    batch: int = 2,
    repeats: int = 3,
    threads: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Build ``preset`` and time its eval-mode forward pass on CPU.

    Args:
        preset: a name of ``ARCHITECTURES``.
        tile: side of the input tiles.
        batch: tiles per forward pass.
        repeats: timed passes after one warm-up; the median is reported.
        threads: CPU threads for the timing (restored afterwards); ``None`` keeps torch's
            setting. On a shared machine 1 thread times more steadily than an oversubscribed pool.
        **overrides: keyword arguments of the preset (``encoder_name``, ``decoder_channels``, ...).
    Returns:
        ``{"preset", "encoder_name", "parameters", "tile", "resize_to", "pad_to",
        "output_stride", "input_shape", "output_shape", "forward_ms", "threads"}``, JSON-ready.
    """
    if repeats < 1:
        raise InputError("repeats", f"expected at least 1, got {repeats}")
    model = build_model(preset, tile, **overrides).eval()
    x = torch.randn(batch, model.encoder.in_channels, tile, tile)
    times, previous = [], torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        with torch.inference_mode():
            out = model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1000)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    return {
        "preset": preset,
        "encoder_name": model.encoder.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tile": tile,
        "resize_to": model.geometry.resize_to,
        "pad_to": model.geometry.pad_to,
        "output_stride": model.encoder.output_stride,
        "input_shape": list(x.shape),
        "output_shape": list(out.shape),
        "forward_ms": round(statistics.median(times), 1),
        "threads": used,
    }
