"""One function per pipeline step: read the step's inputs, call the library, write its outputs.

Each function is what one ``saltseg`` subcommand (and so one Snakemake rule) runs. Outputs are
written atomically; nothing here knows the DAG around it.
"""

from saltseg.steps.ensembles import ensemble, merge, pseudo_labels, score_oof, summary
from saltseg.steps.finishing import mosaic, postprocess, submit, threshold_for
from saltseg.steps.training import folds, predict, pseudo_tiles, split, train

__all__ = [
    "ensemble",
    "folds",
    "merge",
    "mosaic",
    "postprocess",
    "predict",
    "pseudo_labels",
    "pseudo_tiles",
    "score_oof",
    "split",
    "submit",
    "summary",
    "threshold_for",
    "train",
]
