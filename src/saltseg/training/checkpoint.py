"""Resumable training state: saved atomically after every epoch, keyed by the run's parameters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from saltseg.io import atomic_path


def params_key(params: dict[str, Any]) -> str:
    """A short hash of the run's parameters: a checkpoint resumes only the run that wrote it."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` to a temporary name, then rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path, key: str) -> dict[str, Any] | None:
    """The state saved at ``path`` for ``key``; None if absent, from another run, or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError):
        return None
    return state if state.get("key") == key else None
