"""The ``saltseg`` command line: one subcommand per pipeline step (see ``saltseg -h``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from saltseg.errors import InputError
from saltseg.io import WriteError
from saltseg.runtime.job import capped_threads, claim_job_gpu, job_runtime


def _at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum``, refused at parsing with one line."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return integer


COUNT = _at_least(1)  # sizes, batches, counts of folds, tiles, threads
INDEX = _at_least(0)  # fold indices, seeds, margins, worker processes, 0-meaning-default counts
N_FOLDS = _at_least(2)  # a fold split needs two folds at least


def _fraction(text: str) -> float:
    """An argparse ``type``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _non_negative(text: str) -> float:
    """An argparse ``type``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _json_object(text: str) -> dict:
    """An argparse ``type``: a JSON object (``--params``, ``--model``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text[:80]!r}")
    return value


def _cut(args: argparse.Namespace):
    """``--threshold fixed|tuned`` with the ``--cv`` that holds the tuned cut, as one cut."""
    from saltseg.binarize import resolve_cut

    return resolve_cut(args.threshold, args.cv)


def _comma_tuple(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _true(text: str) -> bool:
    return text == "true"


def _or_none(values: list[str] | None) -> list[str] | None:
    return values or None


def _by_fold(histories: list[str]) -> dict[str, str]:
    """history.csv files keyed by their folder (the fold's name)."""
    from pathlib import Path

    return {Path(h).parent.name: h for h in histories}


class Opt(NamedTuple):
    """One option: its flags, its ``add_argument`` settings and how its value reaches the step."""

    flags: tuple[str, ...]
    dest: str  # the step's keyword argument
    settings: dict[str, Any]
    convert: Callable[[Any], Any] | None = None  # applied to the parsed value
    passed: bool = True  # False: only read by a ``Derived`` keyword (--cv of a cut, --device)
    spread: bool = False  # a dict whose items are keyword arguments (model-summary --model)


class Derived(NamedTuple):
    """A keyword argument built from several parsed options; ``around`` is a context held while
    the step runs, entered before ``build`` (GPU slot claiming)."""

    dest: str
    build: Callable[[argparse.Namespace], Any]
    around: Callable[[argparse.Namespace], contextlib.AbstractContextManager] | None = None


def opt(*flags: str, dest: str | None = None, convert=None, passed=True, spread=False, **settings):
    """An ``Opt``; its value goes to the step's keyword ``dest`` (default: the flag's name). A
    ``dest`` unlike the flag keeps the flag's name in the help (``--tile-size TILE_SIZE``)."""
    named = flags[0].lstrip("-").replace("-", "_")
    if dest is not None and dest != named and flags[0].startswith("-"):
        if "choices" not in settings:
            settings.setdefault("metavar", named.upper())
    return Opt(flags, dest or named, settings, convert, passed, spread)


class Command(NamedTuple):
    """One subcommand: the step it runs (``module:function``, imported only when it runs, so
    ``saltseg -h`` and the cheap steps stay fast), its help and its options."""

    step: str
    help: str
    options: tuple[Opt | Derived, ...]
    show: bool = False  # print the step's result as one JSON line


def command(step: str, help: str, *options, show: bool = False) -> Command:
    """A ``Command``; ``options`` are ``Opt``/``Derived`` items or tuples of them (groups)."""
    flat = []
    for item in options:
        flat.extend([item] if isinstance(item, (Opt, Derived)) else item)
    return Command(step, help, tuple(flat), show)


DATA_DIR = opt("--data-dir", required=True, help="dataset in Kaggle layout")
TILE = opt("--tile-size", dest="tile", type=COUNT, default=101)
SEED = opt("--seed", type=INDEX, default=0)
OUT = opt("--out", required=True)
CONTEXT = opt("--context", help="the context rule's windows (models with context)")
TTA = opt("--tta", default="none,hflip", convert=_comma_tuple, help="comma-separated: none, hflip")
BATCH_SIZE = opt("--batch-size", type=COUNT, default=64)

#: the runtime options, passed to the step as one ``runtime``, with a GPU slot held around it
RUNTIME = (
    opt("--device", default="auto", passed=False, help="auto, cpu, cuda or cuda:N"),
    opt("--amp", default="auto", passed=False, help="auto (CUDA, AMX CPUs), true, false"),
    opt("--channels-last", default="auto", passed=False, help="auto (on), true, false"),
    opt(
        "--threads",
        type=INDEX,
        default=0,
        passed=False,
        help="torch CPU threads (0: torch default; at most the CPUs the job may use)",
    ),
    opt(
        "--compile",
        nargs="?",
        const="true",
        default="false",
        choices=["true", "false"],
        passed=False,
        help="torch.compile the model for training (--compile alone: true)",
    ),
    opt(
        "--cuda-graphs",
        default="auto",
        choices=["auto", "true", "false"],
        passed=False,
        help="capture each CUDA training step as one graph (auto: on CUDA where a phase allows)",
    ),
    opt(
        "--jobs-per-gpu",
        type=COUNT,
        default=1,
        passed=False,
        help="jobs that share one GPU (--resources gpu=N*k on N GPUs); each caps its memory to 1/k",
    ),
    Derived("runtime", job_runtime, around=claim_job_gpu),
)

#: one fold of the split
FOLD = (
    DATA_DIR,
    opt("--folds", dest="folds_csv", required=True, help="folds.csv (id, fold)"),
    opt("--fold", type=INDEX, required=True),
    opt("--n-folds", type=N_FOLDS, required=True),
    TILE,
)

#: what the mosaic steps write (assembled from pixels, or a survey's known layout)
MOSAIC_TABLES = (
    opt("--tiles", dest="tiles_out", required=True, help="out: id, mosaic_id, x, y (parquet)"),
    opt("--pairs", dest="pairs_out", required=True, help="out: neighbouring pairs and scores"),
    opt("--png-dir", required=True, help="out: drawings of the largest mosaics"),
    opt("--draw", dest="n_draw", type=INDEX, default=5, help="how many of the largest to draw"),
)

#: the steps that combine probability files and score the OOF result
COMBINE = (
    DATA_DIR,
    TILE,
    opt("--oof-parts", nargs="+", required=True),
    opt("--test-parts", nargs="+", required=True),
    opt("--oof", dest="oof_out", required=True, help="out: combined OOF probabilities"),
    opt("--test", dest="test_out", required=True, help="out: combined test probabilities"),
    opt("--cv", dest="cv_out", required=True, help="out: OOF metric at 0.5 and tuned"),
)


def cut(dest: str) -> tuple:
    """``--cv`` and ``--threshold fixed|tuned``, passed to the step as one cut named ``dest``."""
    return (
        opt("--cv", required=True, passed=False),
        opt("--threshold", choices=["fixed", "tuned"], default="tuned", passed=False),
        Derived(dest, _cut),
    )


#: every subcommand, in the order ``saltseg -h`` lists them
COMMANDS = {
    "synth": command(
        "saltseg.data.synthetic:generate",
        "generate a synthetic dataset in Kaggle layout",
        OUT,
        SEED,
        opt("--sections", type=COUNT, default=4),
        opt("--rows", type=COUNT, default=8, help="tile rows per section"),
        opt("--cols", type=COUNT, default=10, help="tile columns per section"),
        opt("--train-fraction", type=_fraction, default=0.5),
        opt("--blank-fraction", type=_fraction, default=0.03),
        TILE,
    ),
    "folds": command(
        "saltseg.steps:folds",
        "assign train tiles to stratified folds",
        DATA_DIR,
        OUT,
        opt("--n-folds", type=N_FOLDS, default=5),
        SEED,
        opt("--stratify", default="depth", help="depth, coverage or mosaic"),
        opt("--layout", help="mosaic tiles.parquet (for --stratify mosaic)"),
        TILE,
    ),
    "train": command(
        "saltseg.steps:train",
        "train one fold of one model",
        FOLD,
        RUNTIME,
        opt("--params", type=_json_object, required=True, help="the model's config as JSON"),
        SEED,
        opt("--workers", type=INDEX, default=0, help="DataLoader worker processes"),
        opt("--pseudo", help="this fold's pseudo-labels (for phases with data: *pseudo)"),
        opt("--init", help="a teacher's model.pt of this fold: the starting weights"),
        opt(
            "--predict-tta",
            default="none,hflip",
            convert=_comma_tuple,
            help="the fold's prediction TTA (for slot_minutes)",
        ),
        opt(
            "--predict-batch-size",
            type=COUNT,
            default=64,
            help="the prediction's (and validation's)",
        ),
        CONTEXT,
        opt("--out-dir", required=True),
    ),
    "predict": command(
        "saltseg.steps:predict",
        "predict one fold's model on its OOF and the test tiles",
        FOLD,
        RUNTIME,
        opt("--model", dest="model_pt", required=True, help="model.pt written by train"),
        TTA,
        BATCH_SIZE,
        opt("--oof", dest="oof_out", required=True),
        opt("--test", dest="test_out", required=True),
        CONTEXT,
    ),
    "merge": command("saltseg.steps:merge", "join fold OOF maps, average fold test maps", COMBINE),
    "ensemble": command(
        "saltseg.steps:ensemble",
        "weighted average of several models' OOF and test maps",
        COMBINE,
        opt("--weights", nargs="+", type=_non_negative, help="one per model (default: equal)"),
        opt(
            "--members",
            dest="members_out",
            help="out: members.json, each member's folder and weight",
        ),
        opt("--cv-parts", nargs="+", help="each member's cv.json (one member: copied)"),
        opt(
            "--fit-folds",
            dest="folds_csv",
            help="folds.csv: fit the weights on the OOF maps within folds (--weights unused)",
        ),
        opt("--n-folds", type=N_FOLDS, help="the folds of --fit-folds"),
    ),
    "mosaic": command(
        "saltseg.steps:mosaic",
        "assemble all tiles into mosaics from their pixels",
        DATA_DIR,
        TILE,
        *MOSAIC_TABLES,
    ),
    "context": command(
        "saltseg.steps:context_windows",
        "cache each tile's window with its mosaic neighbours",
        DATA_DIR,
        TILE,
        opt("--layout", required=True, help="mosaic tiles.parquet"),
        opt("--pairs", required=True, help="mosaic pairs.parquet (seam ratios)"),
        opt("--margin", type=INDEX, required=True, help="context pixels on each side"),
        opt("--max-ratio", type=_non_negative, default=1.0, help="trust seams below this ratio"),
        opt("--out", required=True, help="out: the windows (.npz)"),
    ),
    "postprocess": command(
        "saltseg.steps:postprocess",
        "binarise test maps, apply mosaic rules if OOF gains",
        DATA_DIR,
        TILE,
        opt("--layout", required=True, help="mosaic tiles.parquet"),
        opt("--folds", dest="folds_csv", required=True),
        opt("--n-folds", type=N_FOLDS, required=True),
        opt("--oof", dest="oof_probs", required=True, help="OOF probabilities of the blend"),
        opt("--probs", dest="test_probs", required=True, help="test probabilities of the blend"),
        opt("--cv", dest="cv_json", required=True, help="cv.json with the OOF-tuned threshold"),
        opt("--threshold", choices=["fixed", "tuned"], default="tuned"),
        opt("--enabled", choices=["true", "false"], default="true", convert=_true),
        opt(
            "--masks",
            dest="masks_out",
            required=True,
            help="out: final binary test masks (parquet)",
        ),
        opt(
            "--report",
            dest="report_out",
            required=True,
            help="out: OOF before/after, gain, applied",
        ),
        opt("--changes", dest="changes_out", required=True, help="out: changed test tiles (csv)"),
    ),
    "pseudo": command(
        "saltseg.steps:pseudo_labels",
        "confident test tiles as pseudo-labels, dealt into folds",
        DATA_DIR,
        TILE,
        opt(
            "--probs",
            dest="test_probs",
            nargs="+",
            required=True,
            help="test probabilities, averaged (one per model)",
        ),
        opt("--method", choices=["balanced", "confident", "phalanx"], default="balanced"),
        opt("--min-confidence", type=_fraction, default=0.9),
        opt("--n-folds", type=N_FOLDS, required=True),
        opt("--cut-cv", help="the teacher's cv.json: its tuned cut binarises the labels"),
        opt(
            "--cut-oof",
            nargs="+",
            help="or the OOF maps of the other folds, to tune the teacher's cut on (default: 0.5)",
        ),
        SEED,
        OUT,
    ),
    "submit": command(
        "saltseg.steps:submit",
        "write the Kaggle submission CSV",
        opt("--masks", dest="masks_path", required=True, help="binary test masks from postprocess"),
        DATA_DIR,
        TILE,
        OUT,
    ),
    "summary": command(
        "saltseg.steps:summary",
        "results/summary.csv: OOF of every model and the blend",
        opt("--model-cvs", nargs="+", required=True, help="results/<stage>/<model>/cv.json"),
        opt("--fold-metrics", nargs="+", required=True, help="every fold's metrics.json"),
        opt("--ensemble-cvs", nargs="+", required=True, help="each stage's ensemble"),
        opt("--blend-cv", required=True),
        opt(
            "--postprocess",
            dest="postprocess_report",
            required=True,
            help="postprocess report.json",
        ),
        OUT,
        opt("--data-dir", help="the data; its solution.csv (test truth), if any, is scored"),
        TILE,
        opt("--submission", help="the submission CSV, scored on the test truth"),
    ),
    "plot-curves": command(
        "saltseg.report:plot_training_curves",
        "report: training curves of one model, a line per fold",
        opt(
            "--history",
            dest="histories",
            nargs="+",
            required=True,
            convert=_by_fold,
            help="history.csv files, one per fold",
        ),
        opt("--title", default=None),
        opt("--out", dest="out_png", required=True),
    ),
    "plot-gallery": command(
        "saltseg.report:plot_oof_gallery",
        "report: worst OOF tiles and empty/non-empty counts",
        DATA_DIR,
        TILE,
        opt("--oof", dest="oof_parquet", required=True),
        cut("threshold"),
        opt("--n", type=COUNT, default=24),
        opt("--out", dest="out_png", required=True),
        opt("--counts", dest="counts_json", required=True, help="out: confusion counts (json)"),
    ),
    "plot-mosaics": command(
        "saltseg.report:plot_mosaics_before_after",
        "report: mosaics before and after post-processing",
        DATA_DIR,
        TILE,
        opt("--layout", dest="layout_parquet", required=True),
        opt(
            "--before", dest="test_masks_before", required=True, help="ensemble test probabilities"
        ),
        opt("--after", dest="test_masks_after", required=True, help="post-processed test masks"),
        opt("--oof", help="OOF probabilities of the same models: draws sections too"),
        cut("threshold_before"),
        opt("--n", type=COUNT, default=3),
        opt("--out-dir", required=True),
    ),
    "plot-runtimes": command(
        "saltseg.report:plot_rule_runtimes",
        "report: run time per rule from benchmark files",
        opt("--benchmarks", nargs="+", required=True, help="<rule>/<job>.tsv files"),
        opt("--out", dest="out_png", required=True),
    ),
    "predict-section": command(
        "saltseg.sections:predict_section",
        "predict a whole section/volume (SEG-Y, npy, png)",
        RUNTIME,
        opt(
            "--models",
            dest="models_dir",
            required=True,
            help="results/blend (the blend's members and weights), a stage or a model directory",
        ),
        opt("--model-files", nargs="*", convert=_or_none, help="use only these model.pt files"),
        opt("--input", dest="input_path", required=True, help=".sgy/.segy, .npy, .png or .tif"),
        opt("--out", dest="out_dir", required=True, help="output directory"),
        opt("--stride", type=COUNT, default=50, help="step between overlapping tiles"),
        BATCH_SIZE,
        TTA,
        opt("--threshold", default="tuned", help="tuned, fixed (0.5) or a number"),
        opt("--cv", help="the cv.json whose tuned threshold to use (default: found)"),
        opt("--axis", choices=["inline", "crossline"], default="inline"),
        opt("--keep-labels", help="a label volume: its interpreted pixels (0/1) are kept"),
    ),
    "survey-tiles": command(
        "saltseg.survey.tiling:tile_survey",
        "tile a labelled survey into the Kaggle layout",
        opt("--seismic", required=True, help=".sgy/.segy cube, .npy, or a 2-D .npy/.png/.tif"),
        opt("--labels", required=True, help="same shape: 1 salt, 0 not, -1/NaN not interpreted"),
        OUT,
        opt("--axis", choices=["inline", "crossline"], default="inline"),
        TILE,
        opt("--test-every", type=COUNT, default=1, help="test tiles from every n-th slice"),
    ),
    "survey-mosaic": command(
        "saltseg.survey.steps:known_mosaic",
        "the mosaic tables of a tiled survey, from its known layout",
        DATA_DIR,
        TILE,
        *MOSAIC_TABLES,
    ),
    "survey-folds": command(
        "saltseg.survey.steps:survey_folds",
        "folds of contiguous slices of a tiled survey",
        DATA_DIR,
        OUT,
        opt("--n-folds", type=N_FOLDS, default=5),
    ),
    "plot-volume": command(
        "saltseg.survey.report:plot_volume_slices",
        "report: a few slices of a survey's predicted volume",
        opt("--seismic", required=True),
        opt("--labels", required=True),
        opt("--volume", required=True, help="predict-section's output folder"),
        opt("--axis", choices=["inline", "crossline"], default="inline"),
        opt("--n", type=COUNT, default=3, help="slices to draw"),
        opt("--out", dest="out_png", required=True),
    ),
    "survey-synth": command(
        "saltseg.survey.synthetic:generate_survey",
        "write a small synthetic SEG-Y survey with sparse labels",
        OUT,
        SEED,
        opt("--inlines", type=COUNT, default=24),
        opt("--crosslines", type=COUNT, default=250),
        opt("--samples", type=COUNT, default=150),
        opt("--every", type=COUNT, default=3, help="interpret every n-th inline"),
        opt("--shift", type=INDEX, default=4, help="traces between neighbouring inlines"),
    ),
    "model-summary": command(
        "saltseg.models.summary:model_summary",
        "one JSON line: size, geometry, output, CPU time",
        opt("preset", help="an architecture name (see saltseg.models.ARCHITECTURES)"),
        TILE,
        opt("--batch", type=COUNT, default=2),
        opt("--threads", type=COUNT, default=None, convert=capped_threads),
        opt(
            "--model",
            dest="overrides",
            type=_json_object,
            default="{}",
            spread=True,
            help="the preset's keyword overrides as JSON",
        ),
        show=True,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saltseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help)
        for option in spec.options:
            if isinstance(option, Opt):
                named = {} if not option.flags[0].startswith("-") else {"dest": option.dest}
                p.add_argument(*option.flags, **named, **option.settings)
    return parser


def run(spec: Command, args: argparse.Namespace) -> Any:
    """Call ``spec``'s step with each option's value as its ``dest`` keyword argument."""
    module, _, name = spec.step.partition(":")
    step = getattr(importlib.import_module(module), name)
    kwargs: dict[str, Any] = {}
    for option in spec.options:
        if isinstance(option, Opt) and option.passed:
            value = getattr(args, option.dest)
            value = option.convert(value) if option.convert else value
            if option.spread:
                kwargs.update(value)
            else:
                kwargs[option.dest] = value
    derived = [option for option in spec.options if isinstance(option, Derived)]
    with contextlib.ExitStack() as held:
        for option in derived:
            if option.around:
                held.enter_context(option.around(args))
        kwargs.update({option.dest: option.build(args) for option in derived})
        result = step(**kwargs)
    if spec.show:
        print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input, or an output that cannot be written, ends with one line on stderr
    and exit status 2; anything else is a bug and shows its traceback."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run(COMMANDS[args.command], args)
    except (InputError, WriteError) as err:  # one line naming the file/field, no traceback
        print(f"saltseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
