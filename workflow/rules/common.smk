"""Config validation, the tables every rule shares, wildcard constraints and input functions."""

import json
import sys
from pathlib import Path

from saltseg.config import (
    blend_members,
    model_params,
    pseudo_source,
    stage_models,
    validate_config,
)

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
STAGES = stage_models(config)  # {"stage1": [model, ...], ...} for the stages that run
BLEND = blend_members(config)  # [(stage, model, weight), ...]
RUNTIME = config["runtime"]
# Settings that can change numbers are params (a change reruns the jobs): device, precision,
# memory format and loader workers (each worker draws its own augmentation stream). Threads,
# torch.compile and CUDA graphs (float rounding at most), GPU sharing and the prediction batch
# size only change speed: they are threads and resources, which never rerun a finished job.
NUMERICS = {key: RUNTIME[key] for key in ("device", "amp", "channels_last", "workers")}
COMPILE = "true" if RUNTIME["compile"] else "false"
CUDA_GRAPHS = RUNTIME["cuda_graphs"]
JOBS_PER_GPU = str(RUNTIME["jobs_per_gpu"])  # a string: no scheduler counts it
PREDICT_BATCH = config["predict"]["batch_size"]


wildcard_constraints:
    stage="|".join(STAGES),
    model="|".join(config["models"]),
    fold="|".join(map(str, FOLDS)),  # fold7 with n_folds 5 is planned by no rule
    margin=r"[1-9]\d*",


def mosaic_layout(wildcards):
    """The mosaic layout, which mosaic-aware folds (``folds.stratify: mosaic``) are built from."""
    return (
        ["results/mosaic/tiles.parquet"]
        if config["folds"]["stratify"] == "mosaic"
        else []
    )


def model_json(wildcards):
    """The model's resolved parameters as one JSON string (a changed value reruns the model)."""
    return json.dumps(model_params(config, wildcards.model), sort_keys=True)


def fold_outputs(name):
    """Input function: one model's per-fold ``name`` files (e.g. ``oof.parquet``)."""

    def files(wildcards):
        return expand(
            f"results/{wildcards.stage}/{wildcards.model}/fold{{fold}}/{name}",
            fold=FOLDS,
        )

    return files


def stage_outputs(name, stages=None):
    """``results/<stage>/<model>/<name>`` of every model of ``stages`` (default: all that run)."""
    return [
        f"results/{stage}/{model}/{name}"
        for stage in stages or STAGES
        for model in STAGES[stage]
    ]


def stage_all_folds(name):
    """``results/<stage>/<model>/fold<k>/<name>`` of every model and fold of the stages that run."""
    return [
        f"results/{stage}/{model}/fold{fold}/{name}"
        for stage in STAGES
        for model in STAGES[stage]
        for fold in FOLDS
    ]


def blend_outputs(name, folds=False):
    """``name`` of every blend member, per model or (``folds``) per fold, in blend order."""
    return [
        f"results/{stage}/{model}/{fold}{name}"
        for stage, model, _ in BLEND
        for fold in ([f"fold{k}/" for k in FOLDS] if folds else [""])
    ]


def stage_fold_outputs(name):
    """Input function: ``name`` of one stage's models on one fold, e.g. their test maps."""

    def files(wildcards):
        return expand(
            f"results/{wildcards.stage}/{{model}}/fold{wildcards.fold}/{name}",
            model=STAGES[wildcards.stage],
        )

    return files


def context_files(model):
    """The context windows of a model with ``context: {margin}`` (none without)."""
    margin = model_params(config, model)["model"].get("context", {}).get("margin", 0)
    return [f"results/context/margin{margin}.npz"] if margin else []


def model_context(wildcards):
    """Input function: the context windows of the job's model (see context_files)."""
    return context_files(wildcards.model)


def context_arg(wildcards, input):
    """``--context FILE`` for a job whose model reads context windows."""
    return f"--context {input.context}" if input.context else ""


def fold_pseudo(wildcards):
    """This fold's pseudo-labels from the previous stage (none for stage 1): made only by that
    stage's models of the same fold, which never saw the fold's validation tiles."""
    source = pseudo_source(config, wildcards.stage)
    return [f"results/pseudo/{source}/fold{wildcards.fold}.parquet"] if source else []


def run_benchmarks(wildcards):
    """The benchmark file of every job that the report's runs are made of, and no stale ones:
    Snakemake writes them as the jobs' outputs, so each is an input the DAG checks."""
    jobs = ["folds/folds", "blend/blend", "mosaic/mosaic", "postprocess/postprocess"]
    jobs += [
        "submission/submission",
        "summary/summary",
        "report_gallery/report_gallery",
    ]
    jobs += ["report_mosaics/report_mosaics"]
    if DATA_DIR == SYNTHETIC_DIR:
        jobs.append("synthetic_data/synthetic_data")
    for stage, models in STAGES.items():
        jobs.append(f"ensemble/{stage}")
        source = pseudo_source(config, stage)
        jobs += [f"pseudo_fold/{source}_fold{fold}" for fold in FOLDS if source]
        for model in models:
            jobs += [f"merge_folds/{stage}_{model}", f"report_curves/{stage}_{model}"]
            jobs += [f"context/{Path(path).stem}" for path in context_files(model)]
            jobs += [
                f"{rule}/{stage}_{model}_fold{k}"
                for rule in ("train", "predict")
                for k in FOLDS
            ]
    return [f"results/benchmarks/{job}.tsv" for job in sorted(set(jobs))]
