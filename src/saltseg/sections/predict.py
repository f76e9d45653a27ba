"""Predict salt on whole sections and volumes with the trained ensemble, slice by slice.

Ensemble: for a blend's folder (``results/blend``, holding ``members.json``), the blend's members
with the blend's weights, as in the submission; otherwise every ``model.pt`` under the models
directory (or the files given), with equal weights per model (the stage ensemble's averaging).
Snapshots of a fold are averaged, then the folds of a model
(``<models>/<model>/fold<k>/model.pt``), then the models.

Threshold: ``"tuned"`` (default) takes ``threshold_pixels`` (the OOF-tuned threshold without the
tiles' minimum-area rule, which has no meaning on a section) from ``cv`` when given, else from
the first of ``<models>/ensemble/cv.json`` and ``<models>/cv.json`` that exists, and falls back
to 0.5 with a warning when neither does (naming the ``snakemake`` target that tunes it: a stage
folder's ensemble is not part of ``submission``); ``"fixed"`` is 0.5 (the winners' choice); a
number is used as given. ``params.json`` records which one was used.

Outputs in ``out_dir`` (written in a temporary directory, renamed when complete):
``probability.npy`` (float32) and ``mask.npy`` (uint8 0/1) of the input's shape;
``probability.sgy`` and ``mask.sgy`` (IEEE float, the input's headers) for SEG-Y input;
``overlay.png`` for 2-D input; ``params.json`` (how the outputs were made).

Labels kept: with ``keep_labels`` (a label volume of the input's shape, see
:mod:`saltseg.survey.labels`), every interpreted pixel (0 or 1) keeps its label as probability
and mask; only the uninterpreted ones (-1/NaN) are predicted.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from saltseg import layout
from saltseg.binarize import resolve_cut
from saltseg.errors import InputError
from saltseg.inference.predict import TTA, load_snapshots, predict_ensemble
from saltseg.io import atomic_dir, check_folder_output, read_json, write_json
from saltseg.runtime.device import Runtime, resolve_runtime
from saltseg.sections.io import PERCENTILES, Section, open_section, write_overlay, write_segy_like
from saltseg.sections.stitch import count_tiles, stitch

DEFAULT_STRIDE = 50  # about half a 101-pixel tile: every pixel is seen by about four tiles


class Ensemble:
    """The weighted mean of the models of ``models_dir``, called on ``(N, tile, tile) uint8`` tiles.

    A ``models_dir`` with a ``members.json`` (a blend) uses its members and weights; otherwise
    every ``model.pt`` under ``models_dir`` (or ``model_files``, when given) counts, with one
    equal weight per model directory.

    Raises:
        InputError: no ``model.pt`` found, or models with different tile sizes.
    """

    def __init__(
        self,
        models_dir: str | Path,
        runtime: Runtime,
        tta=("none", "hflip"),
        model_files: list[str | Path] | None = None,
    ) -> None:
        unknown = set(tta) - set(TTA)
        if unknown:
            raise InputError("tta", f"expected names from {', '.join(TTA)}, got {sorted(unknown)}")
        root = Path(models_dir)
        weights = _member_weights(root) if model_files is None else {}
        if model_files is not None:
            self.paths = [Path(p) for p in model_files]
            for path in self.paths:
                if not path.is_file():
                    raise InputError(path, "expected a trained model.pt, found none")
        elif weights:
            self.paths = [p for member in weights for p in layout.fold_files(member)]
        else:
            self.paths = sorted(root.rglob("model.pt")) if root.is_dir() else []
        if not self.paths:
            raise InputError(root, "expected trained models (model.pt) under it, found none")
        self.groups: dict[Path, list] = defaultdict(list)
        for path in self.paths:  # group the folds of each model
            self.groups[layout.model_dir_of(path)].append(load_snapshots(path, runtime))
        missing = set(weights) - set(self.groups)
        if missing:
            raise InputError(
                root / layout.MEMBERS, f"expected trained folds under {sorted(missing)[0]}"
            )
        total = sum(weights.values()) if weights else len(self.groups)
        self.weights = {g: weights.get(g, 1.0) / total for g in self.groups}
        tiles = {m[0].geometry.tile for folds in self.groups.values() for m in folds}
        if len(tiles) != 1:
            raise InputError(root, f"expected models of one tile size, got {sorted(tiles)}")
        self.tile = tiles.pop()
        if any(m[0].geometry.margin for folds in self.groups.values() for m in folds):
            raise InputError(root, "expected models without context (predict-section cuts tiles)")
        self.runtime, self.tta = runtime, tuple(tta)

    def __call__(self, tiles: np.ndarray, batch_size: int = 64) -> np.ndarray:
        total = np.zeros(tiles.shape, dtype=np.float32)
        for group, folds in self.groups.items():
            weight = self.weights[group] / len(folds)
            for snapshots in folds:
                total += weight * predict_ensemble(
                    snapshots, tiles, self.runtime, batch_size, self.tta
                )
        return np.clip(total, 0, 1)


def _member_weights(models_dir: Path) -> dict[Path, float]:
    """``{member directory: weight}`` from a blend's ``members.json``; empty when there is none.

    Member directories are as the blend wrote them (relative to the workflow's directory); a
    relative one that does not exist from here is looked up next to the blend folder's parent.
    """
    path = models_dir / layout.MEMBERS
    if not path.is_file():
        return {}
    members = read_json(path, ("members",), what="members with models and weight")["members"]
    try:
        pairs = [(Path(m["models"]), float(m["weight"])) for m in members]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"expected members with models and weight ({err})") from None
    if not pairs or any(w < 0 for _, w in pairs) or sum(w for _, w in pairs) <= 0:
        raise InputError(path, "expected at least one member and non-negative weights")
    base = layout.workdir_of(models_dir)
    return {(d if d.is_absolute() or d.is_dir() else base / d): w for d, w in pairs}


def tuning_target(models_dir: str | Path) -> Path:
    """The ``cv.json`` the workflow writes for ``models_dir``: a model's or the blend's own
    (fold models or ``members.json`` directly in it), else the stage ensemble's
    (``<stage>/ensemble/cv.json``, which ``snakemake submission`` does not make)."""
    root = Path(models_dir)
    stage_cv, own_cv = layout.tuned_cv_candidates(root)
    return own_cv if layout.fold_files(root) or (root / layout.MEMBERS).is_file() else stage_cv


def resolve_threshold(
    threshold: float | str, models_dir: str | Path, cv: str | Path | None = None
) -> tuple[float, str]:
    """``(value, source)`` for ``tuned``, ``fixed`` or a number (see the module doc): the cut of
    :func:`saltseg.binarize.resolve_cut` without tile rules, with the ``cv.json`` found under
    ``models_dir`` when none is given.

    Raises:
        InputError: a threshold that is none of these, or a given ``cv`` that is missing.
    """
    if threshold == "tuned" and cv is None:
        cv = next((p for p in layout.tuned_cv_candidates(models_dir) if p.is_file()), None)
        if cv is None:
            print(
                f"saltseg predict-section: warning: {models_dir}: no cv.json, so no tuned"
                f" threshold; using 0.5 (in the workflow, `snakemake {tuning_target(models_dir)}`"
                " tunes it)",
                file=sys.stderr,
            )
            return 0.5, "fixed (no cv.json under the models directory)"
    value = resolve_cut(threshold, cv, pixels=True).threshold
    return value, {"fixed": "fixed", "tuned": str(cv)}.get(threshold, "given")


def predict_section(
    models_dir: str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 64,
    tta: tuple[str, ...] = ("none", "hflip"),
    threshold: float | str = "tuned",
    axis: str = "inline",
    runtime: Runtime | None = None,
    percentiles: tuple[float, float] = PERCENTILES,
    model_files: list[str | Path] | None = None,
    cv: str | Path | None = None,
    keep_labels: str | Path | None = None,
) -> dict[str, Any]:
    """Predict salt probability and mask for a section or volume; write them to ``out_dir``.

    Args:
        models_dir: ``results/blend`` (the blend's members and weights), or a directory with
            trained ``model.pt`` files (e.g. ``results/stage1``).
        input_path: a SEG-Y, ``.npy``, PNG or TIFF file (see :mod:`saltseg.sections.io`).
        out_dir: the output directory (replaced as a whole when complete).
        stride: step between the overlapping tiles, 1..tile.
        batch_size: tiles per forward pass.
        tta: test-time augmentations averaged (names of ``saltseg.inference.predict.TTA``).
        threshold: ``tuned``, ``fixed`` or a number (see the module doc).
        axis: for 3-D volumes, predict ``inline`` or ``crossline`` slices.
        runtime: device and precision; by default :func:`resolve_runtime` (CUDA when present).
        percentiles: the amplitudes mapped onto 0 and 255.
        model_files: use these ``model.pt`` files, not every one under ``models_dir`` (a workflow
            passes the configured models' folds, so stale model directories are left out).
        cv: the ``cv.json`` whose tuned threshold to use (default: found under ``models_dir``).
        keep_labels: a label volume whose interpreted pixels are kept (see the module doc).

    Returns:
        ``params.json``'s content plus ``seconds``, ``tiles_per_s`` and ``pixels_per_s``.

    Raises:
        InputError: bad input or no trained models; nothing is written then.
    """
    check_folder_output(out_dir)  # refused before the models are loaded
    runtime = runtime or resolve_runtime()
    cut, source = resolve_threshold(threshold, models_dir, cv)
    with contextlib.ExitStack() as stack:
        section = stack.enter_context(open_section(input_path, axis, percentiles))
        labels = None
        if keep_labels is not None:
            from saltseg.survey.labels import check_pair

            labels = stack.enter_context(open_section(keep_labels, axis, scale=False))
            check_pair(section, labels)
        ensemble = Ensemble(models_dir, runtime, tta, model_files)
        if not 1 <= stride <= ensemble.tile:
            raise InputError("stride", f"expected 1..{ensemble.tile} (the tile size), got {stride}")
        if batch_size < 1:
            raise InputError("batch_size", f"expected a positive integer, got {batch_size}")
        n_tiles = section.n_slices * count_tiles(section.slice_shape, ensemble.tile, stride)
        params = {
            "input": str(input_path),
            "kind": section.kind,
            "shape": list(section.shape),
            "axis": None if section.slice_axis is None else axis,
            "slices": section.n_slices,
            "scaling": {"percentiles": list(percentiles), **asdict(section.scaling)},
            "models": [p.as_posix() for p in ensemble.paths],
            "tile": ensemble.tile,
            "stride": stride,
            "tta": list(tta),
            "threshold": cut,
            "threshold_source": source,
            "tiles": n_tiles,
            "keep_labels": None if keep_labels is None else str(keep_labels),
        }
        start = time.perf_counter()
        with atomic_dir(out_dir) as tmp:
            nodata = _predict_slices(
                section, ensemble, tmp, stride, batch_size, cut, n_tiles, labels
            )
            params["nodata_pixels"] = nodata
            write_json(tmp / "params.json", params)
        if nodata:
            print(
                f"saltseg predict-section: warning: {input_path}: {nodata} pixels hold no data"
                " (NaN/inf amplitudes): NaN in probability, 0 in mask",
                file=sys.stderr,
            )
        seconds = time.perf_counter() - start
    pixels = int(np.prod(section.shape))
    rates = {"tiles_per_s": n_tiles / seconds, "pixels_per_s": pixels / seconds}
    return {**params, "seconds": seconds, **rates}


def _predict_slices(
    section: Section,
    ensemble: Ensemble,
    out: Path,
    stride: int,
    batch_size: int,
    cut: float,
    n_tiles: int,
    labels: Section | None = None,
) -> int:
    """Predict every slice, writing each into the output arrays as soon as it is done.

    Pixels without data (NaN or inf amplitudes) get NaN probability and mask 0; returns their
    count. They are predicted as the mid grey in between, so their neighbours keep a context.
    With ``labels``, interpreted pixels keep their label."""
    nodata = 0
    prob = np.lib.format.open_memmap(out / "probability.npy", "w+", np.float32, section.shape)
    mask = np.lib.format.open_memmap(out / "mask.npy", "w+", np.uint8, section.shape)
    with tqdm(total=n_tiles, unit="tile", disable=not sys.stderr.isatty()) as bar:
        for k in range(section.n_slices):
            image, missing = section.image_and_nodata(k)
            predict = functools.partial(ensemble, batch_size=batch_size)
            probs = stitch(image, predict, ensemble.tile, stride, batch_size, bar.update)
            probs[missing] = np.nan
            nodata += int(missing.sum())
            if labels is not None:
                from saltseg.survey.labels import UNINTERPRETED, read_labels

                known = read_labels(labels, k)
                probs = np.where(known != UNINTERPRETED, known, probs).astype(np.float32)
            section.store(prob, k, probs)
            section.store(mask, k, (probs > cut).astype(np.uint8))
    prob.flush()
    mask.flush()
    if section.segy is not None:
        write_segy_like(section.segy, out / "probability.sgy", prob)
        write_segy_like(section.segy, out / "mask.sgy", mask)
    if section.slice_axis is None:
        write_overlay(out / "overlay.png", image, probs > cut)
    return nodata
