"""Config validation, the tables every rule shares, wildcard constraints and input functions."""

import json
import sys
from pathlib import Path

from saltseg.config import model_params, validate_config

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ValueError as err:  # one line naming the key, not a traceback
    sys.exit(str(err))

SYNTHETIC_DIR = "results/data/synthetic"
DATA_DIR = (
    SYNTHETIC_DIR
    if config["data_dir"] == "synthetic"
    else str(Path(config["data_dir"]))
)
if DATA_DIR != SYNTHETIC_DIR and not Path(DATA_DIR).is_dir():
    sys.exit(
        f"config: data_dir: expected 'synthetic' or a Kaggle-layout directory, "
        f"{DATA_DIR!r} does not exist"
    )
# Jobs run `python -m saltseg` from this workflow's own src/ (also inside conda envs that hold
# only the dependencies), never from another installed copy.
SRC = Path(workflow.basedir) / "src"
shell.prefix(f"export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
FOLDS = list(range(config["folds"]["n_folds"]))
STAGE1_MODELS = config["stage1"]["models"]
RUNTIME = config["runtime"]


wildcard_constraints:
    model="|".join(config["models"]),
    fold=r"\d+",


def model_json(wildcards):
    """The model's resolved parameters as one JSON string (a changed value reruns the model)."""
    return json.dumps(model_params(config, wildcards.model), sort_keys=True)


def fold_outputs(name):
    """Input function: one model's per-fold ``name`` files (e.g. ``oof.parquet``)."""

    def files(wildcards):
        return expand(
            f"results/stage1/{wildcards.model}/fold{{fold}}/{name}", fold=FOLDS
        )

    return files


def stage1_outputs(name):
    """The per-model merged ``name`` files of every stage-1 model."""
    return expand(f"results/stage1/{{model}}/{name}", model=STAGE1_MODELS)
