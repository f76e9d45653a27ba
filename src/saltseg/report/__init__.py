"""Figures for the Snakemake report: training curves, an OOF gallery, mosaics, run times.

matplotlib is imported inside the functions (drawn on an Agg canvas, the global backend is never
touched), so importing this package does no I/O.
"""

from saltseg.report.curves import plot_training_curves
from saltseg.report.gallery import plot_oof_gallery
from saltseg.report.mosaics import plot_mosaics_before_after
from saltseg.report.runtimes import plot_rule_runtimes

__all__ = [
    "plot_mosaics_before_after",
    "plot_oof_gallery",
    "plot_rule_runtimes",
    "plot_training_curves",
]
