"""The knobs of mosaic assembly, shared by seam matching and placement."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssemblyParams:
    """Knobs of :func:`assemble` (defaults tuned on synthetic sections and the real tiles).

    Attributes:
        ratio: a join resting on one seam needs that seam's ratio below this (the ratio test).
        loose_ratio: candidates up to this ratio are tried at all.
        join_ratio: a join creating two or more seams with evidence needs sqrt(their
            geometric-mean distance / that of the best placement shifted by one tile) below this.
        max_mean_ratio: ... and the geometric mean of their ratios below this (2 or 3 seams);
        max_mean_ratio_many: ... or below this (4 seams or more).
        max_seam_ratio: a seam above this ratio is implausible.
        max_bad_fraction: a join is refused when more than this fraction of its seams with
            evidence are implausible.
        order: rows used by the border predictor.
        min_border_std: borders whose edge row has a smaller std (grey levels) carry no evidence.
        k: nearest neighbours kept per border.
        passes: the most passes over all candidates after the first (ratio-test) pass.
        block: rows of the distance matrix computed at once (memory ~ 24 * block * N bytes).
    """

    ratio: float = 0.8
    loose_ratio: float = 1.5
    join_ratio: float = 0.75
    max_mean_ratio: float = 1.0
    max_mean_ratio_many: float = 1.25
    max_seam_ratio: float = 2.0
    max_bad_fraction: float = 0.25
    order: int = 6
    min_border_std: float = 2.0
    k: int = 4
    passes: int = 6
    block: int = 1024
