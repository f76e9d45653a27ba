"""The factory that builds a model from config: ``ARCHITECTURES[arch](tile=..., **model)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saltseg.errors import InputError
from saltseg.models.base import SegmentationModel
from saltseg.models.presets import PRESETS, preset

ARCHITECTURES: dict[str, Callable[..., SegmentationModel]] = {
    name: preset(name) for name in PRESETS
}


def build_model(arch: str, tile: int, **kwargs: Any) -> SegmentationModel:
    """Build ``ARCHITECTURES[arch]`` for ``tile``-sized inputs from config keyword arguments."""
    if arch not in ARCHITECTURES:
        raise InputError(
            "arch", f"expected one of {', '.join(sorted(ARCHITECTURES))}, got {arch!r}"
        )
    return ARCHITECTURES[arch](tile=tile, **kwargs)


__all__ = ["ARCHITECTURES", "SegmentationModel", "build_model"]
