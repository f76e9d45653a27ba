"""One function per pipeline step: read the step's inputs, call the library, write its outputs.

Each function is what one ``saltseg`` subcommand (and so one Snakemake rule) runs. Outputs are
written atomically; nothing here knows the DAG around it. Names are imported on first use, so a
job that merges parquet files never imports torch, timm or albumentations (seconds per job).
"""

from __future__ import annotations

import importlib
from typing import Any

#: every step and the module that holds it (no module may share a step's name: importing it
#: would shadow the function on this package)
HOMES = {
    "ensemble": "ensembles",
    "merge": "ensembles",
    "pseudo_labels": "labels",
    "score_oof": "ensembles",
    "summary": "finishing",
    "mosaic": "finishing",
    "context_windows": "finishing",
    "postprocess": "finishing",
    "submit": "finishing",
    "folds": "fold_split",
    "split": "fold_split",
    "predict": "fold_models",
    "pseudo_tiles": "fold_models",
    "train": "fold_models",
}
__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{HOMES[name]}"), name)
