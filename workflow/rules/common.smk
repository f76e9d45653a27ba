"""Config validation, the tables every rule shares, wildcard constraints and input functions."""

import json
import sys
from pathlib import Path

# This workflow's own src/ comes first, for the imports below as for the jobs (see SRC), never
# another installed copy of saltseg.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from saltseg import layout
from saltseg.config import (
    blend_members,
    init_source,
    model_params,
    pseudo_source,
    stage_models,
    validate_config,
)

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ValueError as err:  # one line naming the key, not a traceback
    sys.exit(str(err))

SYNTHETIC_DIR = layout.result("data", "synthetic")
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
# Your own labelled survey (docs/own-data.md): tiled into the Kaggle layout under results/data/
# survey by the survey rules, which also take the mosaic layout as known and cut folds of
# contiguous slices. Its geometry is checked here, from the headers, before anything runs.
SURVEY = config["survey"]
if SURVEY:
    from saltseg.errors import InputError
    from saltseg.survey.labels import open_survey

    if config["data_dir"] != "synthetic":
        sys.exit("config: survey, data_dir: expected one data source, got both")
    DATA_DIR = layout.result("data", "survey")
    try:
        with open_survey(
            SURVEY["seismic"],
            SURVEY["labels"],
            config["sections"]["axis"],
            config["tile_size"],
            scale=False,
        ):
            pass
    except InputError as err:
        sys.exit(f"config: survey: {err}")
# The data files a step reads decide its reruns. A folder input changes only when an entry is
# added or removed, so each rule also keeps, as the param data_files, the fingerprint (names,
# sizes, contents) of the files its step reads, of the train side, the test side or the test
# truth. Each file's content hash is kept in FINGERPRINTS under its size and times, shared by
# every snakemake process of this workdir (cluster jobs too): an unchanged file costs a stat.
from saltseg.data.fingerprint import (
    FOLD_TABLES,
    TEST,
    TEST_IDS,
    TRAIN,
    TRUTH,
    fingerprint,
)

FINGERPRINTS = layout.result("data_fingerprints.json")
# a depth-stratified split reads the two tables; by coverage or mosaic, the masks too
FOLDS_READ = FOLD_TABLES if config["folds"]["stratify"] == "depth" else TRAIN


def data_files(*sides):
    """Params function: the fingerprint of the data files of ``sides`` (tuples of paths in
    ``data_dir``, saltseg.data.fingerprint), so that one edited in place, added or removed
    reruns the rule's jobs (params rerun trigger). It takes only wildcards: Snakemake records
    no param computed from input. Called again just before a job runs, it records the data the
    job read (the synthetic data too, made earlier in the same run)."""
    parts = [part for side in sides for part in side]
    return lambda wildcards: fingerprint(DATA_DIR, parts, FINGERPRINTS)


def train_data(wildcards):
    """Params function of train: the train side; the test side too for a fold that learns from
    pseudo-labels (it reads their test images), else the test ids for a model with
    ``slot_minutes`` (the test prediction's share of the slot)."""
    sides = [TRAIN]
    if fold_pseudo(wildcards):
        sides.append(TEST)
    elif model_params(config, wildcards.model).get("slot_minutes"):
        sides.append(TEST_IDS)
    return data_files(*sides)(wildcards)


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
        [layout.result("mosaic", "tiles.parquet")]
        if config["folds"]["stratify"] == "mosaic"
        else []
    )


def model_json(wildcards):
    """The model's resolved parameters as one JSON string (a changed value reruns the model)."""
    return json.dumps(model_params(config, wildcards.model), sort_keys=True)


def fold_outputs(name):
    """Input function: one model's per-fold ``name`` files (e.g. ``oof.parquet``)."""

    def files(wildcards):
        return [
            layout.fold_file(wildcards.stage, wildcards.model, fold, name)
            for fold in FOLDS
        ]

    return files


def stage_outputs(name, stages=None):
    """``results/<stage>/<model>/<name>`` of every model of ``stages`` (default: all that run)."""
    return [
        layout.model_file(stage, model, name)
        for stage in stages or STAGES
        for model in STAGES[stage]
    ]


def stage_all_folds(name):
    """``results/<stage>/<model>/fold<k>/<name>`` of every model and fold of the stages that run."""
    return [
        layout.fold_file(stage, model, fold, name)
        for stage in STAGES
        for model in STAGES[stage]
        for fold in FOLDS
    ]


def blend_outputs(name, folds=False):
    """``name`` of every blend member, per model or (``folds``) per fold, in blend order."""
    return [
        (
            layout.fold_file(stage, model, fold, name)
            if folds
            else layout.model_file(stage, model, name)
        )
        for stage, model, _ in BLEND
        for fold in (FOLDS if folds else [None])
    ]


def stage_fold_outputs(name):
    """Input function: ``name`` of one stage's models on one fold, e.g. their test maps."""

    def files(wildcards):
        return [
            layout.fold_file(wildcards.stage, model, wildcards.fold, name)
            for model in STAGES[wildcards.stage]
        ]

    return files


def context_files(model):
    """The context windows of a model with ``context: {margin}`` (none without)."""
    margin = model_params(config, model)["model"].get("context", {}).get("margin", 0)
    return [layout.context_file(margin)] if margin else []


def model_context(wildcards):
    """Input function: the context windows of the job's model (see context_files)."""
    return context_files(wildcards.model)


def context_arg(wildcards, input):
    """``--context FILE`` for a job whose model reads context windows."""
    return f"--context {input.context}" if input.context else ""


def fold_pseudo(wildcards):
    """This fold's pseudo-labels from the previous stage (none for stage 1): made only by that
    stage's models of the same fold, which never saw the fold's validation tiles, or with
    ``pseudo.teacher: ensemble`` by the whole stage ensemble."""
    source = pseudo_source(config, wildcards.stage)
    if not source:
        return []
    if config["pseudo"]["teacher"] == "ensemble":
        return [layout.pseudo_file(source)]
    return [layout.pseudo_file(source, wildcards.fold)]


def other_folds_oof(wildcards):
    """Input function: the OOF maps of the stage's models on every fold but the job's, where the
    fold's teacher cut is tuned."""
    return [
        layout.fold_file(wildcards.stage, model, fold, "oof.parquet")
        for model in STAGES[wildcards.stage]
        for fold in FOLDS
        if str(fold) != wildcards.fold
    ]


def model_init(wildcards):
    """Input function: the fold's teacher weights a model starts from (its ``init``), if any."""
    source = init_source(config, wildcards.stage, wildcards.model)
    return [layout.fold_file(*source, wildcards.fold, "model.pt")] if source else []


def report_figures():
    """The report's figures besides the run times: each model's curves, the OOF gallery, the
    mosaics before and after post-processing."""
    return [
        *(
            layout.result("report", "curves", f"{stage}_{model}.png")
            for stage in STAGES
            for model in STAGES[stage]
        ),
        layout.result("report", "oof_gallery.png"),
        layout.result("report", "mosaics"),
    ]


def run_benchmarks(wildcards):
    """The benchmark file of every job that the default target's other files are made of, and no
    stale ones: found by walking the DAG back from those files through the inputs of the rules
    that make them, as Snakemake does, so that a new benchmarked step needs no edit here.
    Snakemake writes them as the jobs' outputs, so each is an input the DAG checks."""
    own = rules.report_runtimes.rule
    todo = [path for path in map(str, rules.all.input) if not own.is_producer(path)]
    producers = [other for other in workflow.rules if other is not own]
    seen, benchmarks = set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        maker = next((r for r in producers if r.is_producer(path)), None)
        if maker is None:  # a source: the data, a section
            continue
        found = maker.get_wildcards(path)
        if maker.benchmark:
            benchmarks.add(str(maker.expand_benchmark(found)))
        todo += map(str, maker.expand_input(found)[0])
    return sorted(benchmarks)
