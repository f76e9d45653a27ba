"""Shared fixtures: a small synthetic dataset in Kaggle layout, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from saltseg.data.synthetic import generate


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (where Snakefile and config.yaml live)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Two sections of 4x5 tiles: 40 tiles, about half labelled."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, seed=3, sections=2, rows=4, cols=5, train_fraction=0.5, blank_fraction=0.05)
    return out
