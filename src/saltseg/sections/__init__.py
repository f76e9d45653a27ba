"""Salt prediction on whole seismic sections and volumes (SEG-Y, NumPy, PNG/TIFF).

:func:`~saltseg.sections.predict.predict_section` runs the trained ensemble over overlapping
tiles (:mod:`~saltseg.sections.stitch`) of inputs read slice by slice (:mod:`~saltseg.sections.io`).
Names are imported on first use, so a reader of :mod:`~saltseg.sections.io` alone (the survey's
tiling, the workflow's planning check) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: the function ``stitch`` is imported from its module: once any name loads the submodule
#: ``saltseg.sections.stitch``, the package's attribute ``stitch`` is that module
HOMES = {"predict_section": "predict", "Stitcher": "stitch"}
__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{HOMES[name]}"), name)
