"""The ``saltseg`` command line: one subcommand per pipeline step (see ``saltseg -h``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from saltseg.errors import InputError
from saltseg.io import WriteError


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


def _usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def _capped_threads(threads: int | None) -> int | None:
    """``threads`` (0 or None: torch's default), at most the CPUs this job may use; a cap is
    logged once, as torch would otherwise run more threads than cores and each would wait."""
    usable = _usable_cpus()
    if threads and threads > usable:
        logging.getLogger("saltseg").info(
            "--threads %d capped at %d: the CPUs this job may use", threads, usable
        )
        return usable
    return threads


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="auto", help="auto (CUDA, AMX CPUs), true, false")
    p.add_argument("--channels-last", default="auto", help="auto (on), true, false")
    p.add_argument(
        "--threads",
        type=INDEX,
        default=0,
        help="torch CPU threads (0: torch default; at most the CPUs the job may use)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="true",
        default="false",
        choices=["true", "false"],
        help="torch.compile the model for training (--compile alone: true)",
    )
    p.add_argument(
        "--cuda-graphs",
        default="auto",
        choices=["auto", "true", "false"],
        help="capture each CUDA training step as one graph (auto: on CUDA where a phase allows)",
    )
    p.add_argument(
        "--jobs-per-gpu",
        type=COUNT,
        default=1,
        help="jobs that share one GPU (--resources gpu=N*k on N GPUs); each caps its memory to 1/k",
    )


def _fold_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="dataset in Kaggle layout")
    p.add_argument("--folds", required=True, help="folds.csv (id, fold)")
    p.add_argument("--fold", type=INDEX, required=True)
    p.add_argument("--n-folds", type=N_FOLDS, required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)


def _combine_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the steps that combine probability files and score the OOF result."""
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--oof-parts", nargs="+", required=True)
    p.add_argument("--test-parts", nargs="+", required=True)
    p.add_argument("--oof", required=True, help="out: combined OOF probabilities")
    p.add_argument("--test", required=True, help="out: combined test probabilities")
    p.add_argument("--cv", required=True, help="out: OOF metric at 0.5 and tuned")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saltseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic dataset in Kaggle layout")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--sections", type=COUNT, default=4)
    p.add_argument("--rows", type=COUNT, default=8, help="tile rows per section")
    p.add_argument("--cols", type=COUNT, default=10, help="tile columns per section")
    p.add_argument("--train-fraction", type=_fraction, default=0.5)
    p.add_argument("--blank-fraction", type=_fraction, default=0.03)
    p.add_argument("--tile-size", type=COUNT, default=101)

    p = sub.add_parser("folds", help="assign train tiles to stratified folds")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n-folds", type=N_FOLDS, default=5)
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--stratify", default="depth", help="depth, coverage or mosaic")
    p.add_argument("--layout", help="mosaic tiles.parquet (for --stratify mosaic)")
    p.add_argument("--tile-size", type=COUNT, default=101)

    p = sub.add_parser("train", help="train one fold of one model")
    _fold_args(p)
    _runtime_args(p)
    p.add_argument("--params", type=_json_object, required=True, help="the model's config as JSON")
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--workers", type=INDEX, default=0, help="DataLoader worker processes")
    p.add_argument("--pseudo", help="this fold's pseudo-labels (for phases with data: *pseudo)")
    p.add_argument(
        "--predict-tta", default="none,hflip", help="the fold's prediction TTA (for slot_minutes)"
    )
    p.add_argument(
        "--predict-batch-size", type=COUNT, default=64, help="the prediction's (and validation's)"
    )
    p.add_argument("--context", help="the context rule's windows (models with context)")
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("predict", help="predict one fold's model on its OOF and the test tiles")
    _fold_args(p)
    _runtime_args(p)
    p.add_argument("--model", required=True, help="model.pt written by train")
    p.add_argument("--tta", default="none,hflip", help="comma-separated: none, hflip")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--oof", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--context", help="the context rule's windows (models with context)")

    _combine_args(sub.add_parser("merge", help="join fold OOF maps, average fold test maps"))
    p = sub.add_parser("ensemble", help="weighted average of several models' OOF and test maps")
    _combine_args(p)
    p.add_argument(
        "--weights", nargs="+", type=_non_negative, help="one per model (default: equal)"
    )
    p.add_argument("--members", help="out: members.json, each member's folder and weight")
    p.add_argument("--cv-parts", nargs="+", help="each member's cv.json (one member: copied)")

    p = sub.add_parser("mosaic", help="assemble all tiles into mosaics from their pixels")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--tiles", required=True, help="out: id, mosaic_id, x, y (parquet)")
    p.add_argument("--pairs", required=True, help="out: neighbouring pairs and scores (parquet)")
    p.add_argument("--png-dir", required=True, help="out: drawings of the largest mosaics")
    p.add_argument("--draw", type=INDEX, default=5, help="how many of the largest to draw")

    p = sub.add_parser("context", help="cache each tile's window with its mosaic neighbours")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--layout", required=True, help="mosaic tiles.parquet")
    p.add_argument("--pairs", required=True, help="mosaic pairs.parquet (seam ratios)")
    p.add_argument("--margin", type=INDEX, required=True, help="context pixels on each side")
    p.add_argument(
        "--max-ratio", type=_non_negative, default=1.0, help="trust seams below this ratio"
    )
    p.add_argument("--out", required=True, help="out: the windows (.npz)")

    p = sub.add_parser("postprocess", help="binarise test maps, apply mosaic rules if OOF gains")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--layout", required=True, help="mosaic tiles.parquet")
    p.add_argument("--folds", required=True)
    p.add_argument("--n-folds", type=N_FOLDS, required=True)
    p.add_argument("--oof", required=True, help="OOF probabilities of the blend")
    p.add_argument("--probs", required=True, help="test probabilities of the blend")
    p.add_argument("--cv", required=True, help="cv.json with the OOF-tuned threshold")
    p.add_argument("--threshold", choices=["fixed", "tuned"], default="tuned")
    p.add_argument("--enabled", choices=["true", "false"], default="true")
    p.add_argument("--masks", required=True, help="out: final binary test masks (parquet)")
    p.add_argument("--report", required=True, help="out: OOF before/after, gain, applied")
    p.add_argument("--changes", required=True, help="out: changed test tiles (csv)")

    p = sub.add_parser("pseudo", help="confident test tiles as pseudo-labels, dealt into folds")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument(
        "--probs", nargs="+", required=True, help="test probabilities, averaged (one per model)"
    )
    p.add_argument("--method", choices=["confident", "phalanx"], default="confident")
    p.add_argument("--min-confidence", type=_fraction, default=0.9)
    p.add_argument("--n-folds", type=N_FOLDS, required=True)
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--out", required=True)

    p = sub.add_parser("submit", help="write the Kaggle submission CSV")
    p.add_argument("--masks", required=True, help="binary test masks from postprocess")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--out", required=True)

    p = sub.add_parser("summary", help="results/summary.csv: OOF of every model and the blend")
    p.add_argument("--model-cvs", nargs="+", required=True, help="results/<stage>/<model>/cv.json")
    p.add_argument("--fold-metrics", nargs="+", required=True, help="every fold's metrics.json")
    p.add_argument("--ensemble-cvs", nargs="+", required=True, help="each stage's ensemble")
    p.add_argument("--blend-cv", required=True)
    p.add_argument("--postprocess", required=True, help="postprocess report.json")
    p.add_argument("--out", required=True)

    p = sub.add_parser("plot-curves", help="report: training curves of one model, a line per fold")
    p.add_argument("--history", nargs="+", required=True, help="history.csv files, one per fold")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True)

    p = sub.add_parser("plot-gallery", help="report: worst OOF tiles and empty/non-empty counts")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--oof", required=True)
    p.add_argument("--cv", required=True)
    p.add_argument("--threshold", choices=["fixed", "tuned"], default="tuned")
    p.add_argument("--n", type=COUNT, default=24)
    p.add_argument("--out", required=True)
    p.add_argument("--counts", required=True, help="out: confusion counts (json)")

    p = sub.add_parser("plot-mosaics", help="report: mosaics before and after post-processing")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--layout", required=True)
    p.add_argument("--before", required=True, help="ensemble test probabilities")
    p.add_argument("--after", required=True, help="post-processed test masks")
    p.add_argument("--oof", help="OOF probabilities of the same models: draws sections too")
    p.add_argument("--cv", required=True)
    p.add_argument("--threshold", choices=["fixed", "tuned"], default="tuned")
    p.add_argument("--n", type=COUNT, default=3)
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("plot-runtimes", help="report: run time per rule from benchmark files")
    p.add_argument("--benchmarks", nargs="+", required=True, help="<rule>/<job>.tsv files")
    p.add_argument("--out", required=True)

    p = sub.add_parser("predict-section", help="predict a whole section/volume (SEG-Y, npy, png)")
    _runtime_args(p)
    p.add_argument(
        "--models",
        required=True,
        help="results/blend (the blend's members and weights), a stage or a model directory",
    )
    p.add_argument("--model-files", nargs="*", help="use only these model.pt files")
    p.add_argument("--input", required=True, help=".sgy/.segy, .npy, .png or .tif")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--stride", type=COUNT, default=50, help="step between overlapping tiles")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--tta", default="none,hflip", help="comma-separated: none, hflip")
    p.add_argument("--threshold", default="tuned", help="tuned, fixed (0.5) or a number")
    p.add_argument("--cv", help="the cv.json whose tuned threshold to use (default: found)")
    p.add_argument("--axis", choices=["inline", "crossline"], default="inline")

    p = sub.add_parser("model-summary", help="one JSON line: size, geometry, output, CPU time")
    p.add_argument("preset", help="an architecture name (see saltseg.models.ARCHITECTURES)")
    p.add_argument("--tile-size", type=COUNT, default=101)
    p.add_argument("--batch", type=COUNT, default=2)
    p.add_argument("--threads", type=COUNT, default=None)
    p.add_argument(
        "--model", type=_json_object, default="{}", help="the preset's keyword overrides as JSON"
    )
    for name, command in sub.choices.items():
        command.set_defaults(func=COMMANDS[name])
    return parser


def _runtime(args: argparse.Namespace):
    import torch

    from saltseg.runtime.device import keep_freed_memory, resolve_runtime
    from saltseg.runtime.gpus import cap_memory_share

    threads = _capped_threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    runtime = resolve_runtime(
        args.device, args.amp, args.channels_last, args.compile == "true", args.cuda_graphs
    )
    if runtime.device.type == "cpu":
        keep_freed_memory()
    cap_memory_share(runtime.device, args.jobs_per_gpu)
    return runtime


def _gpu_slots(device: str) -> int:
    """GPUs to share between concurrent jobs: all visible ones, unless a device is pinned."""
    if device not in ("auto", "cuda"):
        return 0
    import torch

    return torch.cuda.device_count()  # asks NVML; CUDA itself starts only after the claim


def _synth(args: argparse.Namespace) -> None:
    from saltseg.data.synthetic import generate

    generate(
        args.out,
        seed=args.seed,
        sections=args.sections,
        rows=args.rows,
        cols=args.cols,
        train_fraction=args.train_fraction,
        blank_fraction=args.blank_fraction,
        tile=args.tile_size,
    )


def _model_summary(args: argparse.Namespace) -> None:
    from saltseg.models.summary import model_summary

    print(
        json.dumps(
            model_summary(
                args.preset,
                args.tile_size,
                args.batch,
                threads=_capped_threads(args.threads),
                **args.model,
            )
        )
    )


def _folds(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.folds(
        args.data_dir,
        args.out,
        n_folds=args.n_folds,
        seed=args.seed,
        stratify=args.stratify,
        tile=args.tile_size,
        layout=args.layout,
    )


def _train(args: argparse.Namespace) -> None:
    from saltseg import steps
    from saltseg.runtime.gpus import claim_gpu

    with claim_gpu(_gpu_slots(args.device), jobs_per_gpu=args.jobs_per_gpu):
        steps.train(
            args.data_dir,
            args.folds,
            fold=args.fold,
            n_folds=args.n_folds,
            params=args.params,
            tile=args.tile_size,
            seed=args.seed,
            runtime=_runtime(args),
            out_dir=args.out_dir,
            workers=args.workers,
            pseudo=args.pseudo,
            context=args.context,
            predict_tta=tuple(args.predict_tta.split(",")),
            predict_batch_size=args.predict_batch_size,
        )


def _predict(args: argparse.Namespace) -> None:
    from saltseg import steps
    from saltseg.runtime.gpus import claim_gpu

    with claim_gpu(_gpu_slots(args.device), jobs_per_gpu=args.jobs_per_gpu):
        steps.predict(
            args.model,
            args.data_dir,
            args.folds,
            fold=args.fold,
            n_folds=args.n_folds,
            tile=args.tile_size,
            runtime=_runtime(args),
            tta=args.tta.split(","),
            batch_size=args.batch_size,
            oof_out=args.oof,
            test_out=args.test,
            context=args.context,
        )


def _merge(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.merge(
        args.data_dir,
        args.tile_size,
        oof_parts=args.oof_parts,
        test_parts=args.test_parts,
        oof_out=args.oof,
        test_out=args.test,
        cv_out=args.cv,
    )


def _ensemble(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.ensemble(
        args.data_dir,
        args.tile_size,
        oof_parts=args.oof_parts,
        test_parts=args.test_parts,
        weights=args.weights,
        oof_out=args.oof,
        test_out=args.test,
        cv_out=args.cv,
        members_out=args.members,
        cv_parts=args.cv_parts,
    )


def _mosaic(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.mosaic(
        args.data_dir,
        args.tile_size,
        tiles_out=args.tiles,
        pairs_out=args.pairs,
        png_dir=args.png_dir,
        n_draw=args.draw,
    )


def _context(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.context_windows(
        args.data_dir,
        args.tile_size,
        layout=args.layout,
        pairs=args.pairs,
        margin=args.margin,
        max_ratio=args.max_ratio,
        out=args.out,
    )


def _postprocess(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.postprocess(
        args.data_dir,
        args.tile_size,
        layout=args.layout,
        folds_csv=args.folds,
        n_folds=args.n_folds,
        oof_probs=args.oof,
        test_probs=args.probs,
        cv_json=args.cv,
        threshold=args.threshold,
        enabled=args.enabled == "true",
        masks_out=args.masks,
        report_out=args.report,
        changes_out=args.changes,
    )


def _pseudo(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.pseudo_labels(
        args.data_dir,
        args.tile_size,
        test_probs=args.probs,
        method=args.method,
        min_confidence=args.min_confidence,
        n_folds=args.n_folds,
        seed=args.seed,
        out=args.out,
    )


def _submit(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.submit(args.masks, args.data_dir, tile=args.tile_size, out=args.out)


def _summary(args: argparse.Namespace) -> None:
    from saltseg import steps

    steps.summary(
        model_cvs=args.model_cvs,
        fold_metrics=args.fold_metrics,
        ensemble_cvs=args.ensemble_cvs,
        blend_cv=args.blend_cv,
        postprocess_report=args.postprocess,
        out=args.out,
    )


def _predict_section(args: argparse.Namespace) -> None:
    from saltseg.runtime.gpus import claim_gpu
    from saltseg.sections import predict_section

    with claim_gpu(_gpu_slots(args.device), jobs_per_gpu=args.jobs_per_gpu):
        predict_section(
            args.models,
            args.input,
            args.out,
            stride=args.stride,
            batch_size=args.batch_size,
            tta=tuple(args.tta.split(",")),
            threshold=args.threshold,
            axis=args.axis,
            runtime=_runtime(args),
            model_files=args.model_files or None,
            cv=args.cv,
        )


def _plot_curves(args: argparse.Namespace) -> None:
    from pathlib import Path

    from saltseg import report

    histories = {Path(h).parent.name: h for h in args.history}
    report.plot_training_curves(histories, args.out, title=args.title)


def _plot_gallery(args: argparse.Namespace) -> None:
    from saltseg import report
    from saltseg.binarize import resolve_cut

    report.plot_oof_gallery(
        args.data_dir,
        args.tile_size,
        args.oof,
        threshold=resolve_cut(args.threshold, args.cv),
        out_png=args.out,
        n=args.n,
        counts_json=args.counts,
    )


def _plot_mosaics(args: argparse.Namespace) -> None:
    from saltseg import report
    from saltseg.binarize import resolve_cut

    report.plot_mosaics_before_after(
        args.layout,
        args.data_dir,
        args.tile_size,
        test_masks_before=args.before,
        test_masks_after=args.after,
        out_dir=args.out_dir,
        n=args.n,
        threshold_before=resolve_cut(args.threshold, args.cv),
        oof=args.oof,
    )


def _plot_runtimes(args: argparse.Namespace) -> None:
    from saltseg import report

    report.plot_rule_runtimes(args.benchmarks, args.out)


#: each subcommand's handler (set as the subparser's ``func`` default); handlers import the
#: library late, so ``saltseg -h`` and the cheap steps stay fast
COMMANDS = {
    "synth": _synth,
    "folds": _folds,
    "train": _train,
    "predict": _predict,
    "merge": _merge,
    "ensemble": _ensemble,
    "mosaic": _mosaic,
    "postprocess": _postprocess,
    "pseudo": _pseudo,
    "context": _context,
    "submit": _submit,
    "summary": _summary,
    "plot-curves": _plot_curves,
    "plot-gallery": _plot_gallery,
    "plot-mosaics": _plot_mosaics,
    "plot-runtimes": _plot_runtimes,
    "predict-section": _predict_section,
    "model-summary": _model_summary,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input, or an output that cannot be written, ends with one line on stderr
    and exit status 2; anything else is a bug and shows its traceback."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        args.func(args)
    except (InputError, WriteError) as err:  # one line naming the file/field, no traceback
        print(f"saltseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
