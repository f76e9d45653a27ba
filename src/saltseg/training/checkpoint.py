"""Resumable training state: saved atomically after every epoch, keyed by the run's parameters."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from saltseg.io import atomic_path

log = logging.getLogger(__name__)

#: the layout of a saved state, bumped when one written before no longer loads (2: cosine
#: schedules are a LambdaLR that reads the phase's re-sized epochs)
FORMAT = 2


def params_key(params: dict[str, Any]) -> str:
    """A short hash of the run's parameters and the state's ``FORMAT``: a checkpoint resumes only
    the run that wrote it, and only if this code can read it."""
    keyed = {"params": params, "format": FORMAT}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` to a temporary name, then rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path, key: str) -> dict[str, Any] | None:
    """The state saved at ``path`` for ``key``; None if absent, from another run, or unreadable.

    Any unreadable file (truncated, empty, garbage, not a dict) means "start over": resuming is an
    optimisation, and a fresh run gives the same result.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch and pickle raise many types on a corrupt file
        log.warning("%s: unreadable checkpoint, training starts over (%s)", path, _first_line(err))
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        return None
    return state


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]
