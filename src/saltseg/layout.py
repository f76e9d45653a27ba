"""The results layout, in one place: where the workflow's files live under ``results/``.

    results/<stage>/<model>/fold<k>/   model.pt, metrics.json, history.csv, params.json,
                                       oof.parquet, test.parquet (one fold of one model)
    results/<stage>/<model>/           oof.parquet, test.parquet, cv.json (the folds merged)
    results/<stage>/ensemble/          the same for the stage's models averaged
    results/blend/                     the same for the blend, and members.json
    results/logs/<rule>/<job>.log, results/benchmarks/<rule>/<job>.tsv

The rules build their paths here (a Snakemake pattern is the same call with ``"{stage}"`` and
the like as arguments), and the steps that must know where a file sits in this tree (which model
a ``cv.json`` scores, where a blend's members are) ask :func:`locate` and the helpers below
instead of counting parent folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saltseg.errors import InputError

RESULTS = "results"
ENSEMBLE = "ensemble"  # a stage's ensemble: a sibling of its models
BLEND = "blend"
CV = "cv.json"
MEMBERS = "members.json"
MODEL = "model.pt"
FOLD_PREFIX = "fold"


def stage_dir(stage: str) -> str:
    """``results/<stage>``."""
    return f"{RESULTS}/{stage}"


def model_dir(stage: str, model: str) -> str:
    """``results/<stage>/<model>`` (``model`` may be :data:`ENSEMBLE`)."""
    return f"{stage_dir(stage)}/{model}"


def model_file(stage: str, model: str, name: str) -> str:
    """``results/<stage>/<model>/<name>``: a model's merged folds (``oof.parquet``, ``cv.json``)."""
    return f"{model_dir(stage, model)}/{name}"


def fold_dir(stage: str, model: str, fold: int | str) -> str:
    """``results/<stage>/<model>/fold<k>``."""
    return f"{model_dir(stage, model)}/{FOLD_PREFIX}{fold}"


def fold_file(stage: str, model: str, fold: int | str, name: str) -> str:
    """``results/<stage>/<model>/fold<k>/<name>``."""
    return f"{fold_dir(stage, model, fold)}/{name}"


def ensemble_file(stage: str, name: str) -> str:
    """``results/<stage>/ensemble/<name>``: the stage's models averaged."""
    return model_file(stage, ENSEMBLE, name)


def blend_dir() -> str:
    """``results/blend``."""
    return f"{RESULTS}/{BLEND}"


def blend_file(name: str) -> str:
    """``results/blend/<name>``: oof and test parquets, ``cv.json``, ``members.json``."""
    return f"{blend_dir()}/{name}"


def result(*parts: str) -> str:
    """``results/<parts...>``: the other steps' files (``folds.csv``, ``mosaic/tiles.parquet``)."""
    return "/".join([RESULTS, *parts])


def context_file(margin: int | str) -> str:
    """``results/context/margin<m>.npz``: every tile's window with ``margin`` pixels around."""
    return result("context", f"margin{margin}.npz")


def pseudo_file(stage: str, fold: int | str | None = None) -> str:
    """``results/pseudo/<stage>.parquet`` (the stage ensemble's labels), or with ``fold``
    ``results/pseudo/<stage>/fold<k>.parquet`` (from the stage's fold-k models only)."""
    if fold is None:
        return result("pseudo", f"{stage}.parquet")
    return result("pseudo", stage, f"{FOLD_PREFIX}{fold}.parquet")


def log(rule: str, job: str) -> str:
    """``results/logs/<rule>/<job>.log``."""
    return result("logs", rule, f"{job}.log")


def benchmark(rule: str, job: str) -> str:
    """``results/benchmarks/<rule>/<job>.tsv``."""
    return result("benchmarks", rule, f"{job}.tsv")


@dataclass(frozen=True)
class Place:
    """Where a file sits in the layout: its ``stage`` and ``model`` (the model folder is
    ``model_dir``), and its ``fold`` when it is a fold's file."""

    stage: str
    model: str
    model_dir: Path
    fold: int | None = None


def locate(path: str | Path) -> Place:
    """The :class:`Place` of ``results/<stage>/<model>/[fold<k>/]<file>`` (any root).

    Raises:
        InputError: ``path`` is not a model's or a fold's file in this layout.
    """
    path = Path(path)
    folder, fold = path.parent, None
    name = folder.name
    if name.startswith(FOLD_PREFIX) and name[len(FOLD_PREFIX) :].isdigit():
        folder, fold = folder.parent, int(name[len(FOLD_PREFIX) :])
    if not folder.name or not folder.parent.name:
        raise InputError(path, "expected a file under <stage>/<model>/ or <stage>/<model>/fold<k>/")
    return Place(folder.parent.name, folder.name, folder, fold)


def fold_files(model_folder: str | Path, name: str = MODEL) -> list[Path]:
    """Every fold's ``name`` under a model folder (``<model>/fold<k>/<name>``), sorted."""
    return sorted(Path(model_folder).glob(f"{FOLD_PREFIX}*/{name}"))


def model_dir_of(fold_file: str | Path) -> Path:
    """The model folder of a fold's file: ``<model>`` of ``<model>/fold<k>/model.pt``."""
    return Path(fold_file).parent.parent


def tuned_cv_candidates(models_dir: str | Path) -> list[Path]:
    """Where a folder of models keeps its tuned cut: a stage's ``ensemble/cv.json``, else its own
    ``cv.json`` (a model's or the blend's), in that order."""
    return [Path(models_dir) / ENSEMBLE / CV, Path(models_dir) / CV]


def workdir_of(results_subdir: str | Path) -> Path:
    """The workflow directory of ``<workdir>/results/<dir>`` (e.g. of ``results/blend``): the
    directory the paths of a ``members.json`` are relative to."""
    return Path(results_subdir).parent.parent
