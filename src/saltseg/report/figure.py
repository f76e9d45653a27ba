"""One figure, drawn without pyplot: an Agg-canvas ``Figure``, saved atomically.

No pyplot state, no global backend switch, and matplotlib is imported only when a figure is
drawn, so importing the report package does no I/O.
"""

from __future__ import annotations

from pathlib import Path

from saltseg.io import atomic_path

DPI = 110


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out: str | Path) -> None:
    """Write ``fig`` to ``out`` atomically; the format follows the suffix."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI)
