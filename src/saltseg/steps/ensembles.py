"""Steps that combine probability files: the fold merge and the model ensemble, scored on OOF."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np

from saltseg import layout
from saltseg import probs as probs_io
from saltseg.binarize import binarize, tune
from saltseg.data import kaggle
from saltseg.data.folds import read_folds
from saltseg.errors import InputError
from saltseg.io import copy_file, write_json
from saltseg.metrics import bucket_scores, competition_metric

log = logging.getLogger(__name__)


def merge(
    data_dir: str,
    tile: int,
    oof_parts: list[str],
    test_parts: list[str],
    oof_out: str,
    test_out: str,
    cv_out: str,
) -> None:
    """Join per-fold OOF maps (each train tile once), average test maps, score the OOF.

    ``cv.json`` is :func:`score_oof` of the joined maps.
    """
    ids, maps = [], []
    for part in oof_parts:
        part_ids, part_maps = probs_io.read_probs(part)
        ids += part_ids
        maps.append(part_maps)
    train = kaggle.load_train(data_dir, tile)
    if len(set(ids)) != len(ids) or set(ids) != set(train.ids):
        raise InputError(oof_parts[0], "expected the fold OOF files to cover each train id once")
    oof = probs_io.align(oof_parts[0], train.ids, ids, np.concatenate(maps))
    test = mean_maps(test_parts)  # every part checked before anything is written
    _write_combined(train, oof, test, oof_out, test_out, cv_out)


def _write_combined(
    train: kaggle.Tiles,
    oof: np.ndarray,
    test: tuple[list[str], np.ndarray],
    oof_out: str,
    test_out: str,
    cv_out: str,
) -> dict[str, Any]:
    """Write combined OOF maps (in train order), test ``(ids, maps)`` and the OOF's cv.json;
    return what cv.json holds."""
    probs_io.write_probs(oof_out, train.ids, oof)
    probs_io.write_probs(test_out, *test)
    cv = score_oof(train, oof)
    write_json(cv_out, cv)
    return cv


def score_oof(train: kaggle.Tiles, oof: np.ndarray) -> dict[str, Any]:
    """The OOF metric at 0.5 and with the best cut (threshold, minimum mask area and minimum
    peak; blank tiles forced empty, as in the submission), the tuned metric per coverage bucket,
    and the best threshold without tile rules (``threshold_pixels``, for whole sections)."""
    oof = np.where(kaggle.is_blank(train.images)[:, None, None], 0.0, oof)
    tuned = tune(train.masks, oof)
    return {
        "n_tiles": len(train),
        "metric_at_0.5": competition_metric(train.masks, oof > 0.5),
        **asdict(tuned.cut),
        "metric_tuned": tuned.metric,
        # for maps without tiles (whole sections), where no tile rule applies
        "threshold_pixels": tuned.threshold_pixels,
        "buckets": bucket_scores(train.masks, binarize(oof, train.images, tuned.cut)),
    }


def mean_maps(parts: list[str], weights: list[float] | None = None) -> tuple[list[str], np.ndarray]:
    """The (weighted) mean of probability files that hold the same ids in the same order."""
    weights = weights or [1.0] * len(parts)
    ids, total = probs_io.read_probs(parts[0])
    total *= weights[0]
    for part, weight in zip(parts[1:], weights[1:]):
        part_ids, maps = probs_io.read_probs(part)
        if part_ids != ids:
            raise InputError(part, f"expected the same ids in the same order as {parts[0]}")
        total += weight * maps
    return ids, total / sum(weights)


def ensemble(
    data_dir: str,
    tile: int,
    oof_parts: list[str],
    test_parts: list[str],
    weights: list[float] | None,
    oof_out: str,
    test_out: str,
    cv_out: str,
    members_out: str | None = None,
    cv_parts: list[str] | None = None,
    folds_csv: str | None = None,
    n_folds: int | None = None,
) -> None:
    """Weighted average of several models' OOF and test maps, and the OOF score of the average.

    With ``folds_csv`` the weights are fitted on the OOF maps (:func:`fitted_blend`), and judged
    within folds.

    ``members_out`` (``members.json``) records each member's directory (the folder of its OOF
    file, holding ``fold<k>/model.pt``) and weight, so that ``predict-section --models`` on the
    ensemble's folder applies the same members and weights.

    ``cv_parts`` (each member's ``cv.json``): the average of a single member is that member, so
    its OOF, test and cv.json files are copied as they are instead of being read, averaged and
    scored again (the same values; it spares the serial tail of a one-model run half a minute
    per step).
    """
    if weights is not None and len(weights) != len(oof_parts):
        raise InputError("weights", f"expected {len(oof_parts)} weights, got {len(weights)}")
    for name, parts in [("test_parts", test_parts), ("cv_parts", cv_parts or oof_parts)]:
        if len(parts) != len(oof_parts):
            raise InputError(name, f"expected one file per OOF part ({len(oof_parts)})")
    if folds_csv and len(oof_parts) > 1:
        outs = (oof_out, test_out, cv_out, members_out)
        fitted_blend(data_dir, tile, oof_parts, test_parts, folds_csv, n_folds or 2, outs)
        return
    if len(oof_parts) == 1 and cv_parts:
        _expect_train_order(
            oof_parts[0], probs_io.read_ids(oof_parts[0]), kaggle.train_ids(data_dir)
        )
        for part, out in zip([*oof_parts, *test_parts, *cv_parts], [oof_out, test_out, cv_out]):
            copy_file(part, out)
    else:
        train = kaggle.load_train(data_dir, tile)
        oof_ids, oof = mean_maps(oof_parts, weights)
        _expect_train_order(oof_parts[0], oof_ids, train.ids)
        _write_combined(train, oof, mean_maps(test_parts, weights), oof_out, test_out, cv_out)
    if members_out:
        weights = weights or [1.0] * len(oof_parts)
        members = [
            {"models": layout.locate(part).model_dir.as_posix(), "weight": weight}
            for part, weight in zip(oof_parts, weights)
        ]
        write_json(members_out, {"method": "fixed", "members": members, "dropped": []})


def fitted_blend(
    data_dir: str,
    tile: int,
    oof_parts: list[str],
    test_parts: list[str],
    folds_csv: str,
    n_folds: int,
    outs: tuple[str, str, str, str | None],
) -> None:
    """The blend of fitted weights (see :func:`ensemble`): one predictor, one score.

    The weights are fitted on all OOF tiles (:func:`saltseg.blend.fit_weights`), and the blend's
    OOF maps, its cv.json (so the submission's tuned cut) and its test maps all come from those
    weights: one-hot weights give that member's maps exactly. Weights fitted within folds
    (each fold blended with weights fitted on the others) judge them on tiles they were not
    fitted on: unless that held-out blend scores above the best member alone, the blend is the
    best member alone. Every score is :func:`saltseg.blend.blend_score`, the tuned cut of
    cv.json's ``metric_tuned``, so the blend's OOF never scores below its best member.

    ``members.json`` lists the members of weight above 0 (``members``, what ``predict-section``
    applies) and the others with why (``dropped``), each with its OOF score (``oof_tuned``, the
    summary's), its weight and its weight per held-out fold.
    """
    from saltseg.blend import Fit, blend_score, fit_weights, fit_within_folds

    oof_out, test_out, cv_out, members_out = outs
    train = kaggle.load_train(data_dir, tile)
    blank = kaggle.is_blank(train.images)
    members = []
    for part in oof_parts:
        ids, maps = probs_io.read_probs(part)
        _expect_train_order(part, ids, train.ids)
        maps[blank] = 0.0
        members.append(maps)
    folds = read_folds(folds_csv, n_folds).set_index("id")["fold"].loc[train.ids].to_numpy()
    held_out_maps, by_fold = fit_within_folds(train.masks, members, folds)
    held_out = blend_score(train.masks, held_out_maps)
    del held_out_maps
    fit = fit_weights(train.masks, members)
    best = int(np.argmax(fit.member_scores))
    fallback = fit.weights[best] < 1 and held_out <= fit.member_scores[best]
    if fallback:  # the fitted weights did not beat the best member on tiles they were not fit on
        fit = Fit(np.eye(len(members))[best], float(fit.member_scores[best]), fit.member_scores)
    del members
    used = [k for k, w in enumerate(fit.weights) if w > 0]
    weights = [float(fit.weights[k]) for k in used]
    _, oof = mean_maps([oof_parts[k] for k in used], weights)  # the same weights, the same way
    test = mean_maps([test_parts[k] for k in used], weights)
    score = _write_combined(train, oof, test, oof_out, test_out, cv_out)["metric_tuned"]
    if not members_out:
        return
    kept, dropped = [], []
    for k, part in enumerate(oof_parts):
        place = layout.locate(part)
        record = {
            "models": place.model_dir.as_posix(),
            "stage": place.stage,
            "model": place.model,
            "weight": round(float(fit.weights[k]), 6),
            "oof_tuned": float(fit.member_scores[k]),
            "fold_weights": {str(f): round(float(w[k]), 6) for f, w in by_fold.items()},
        }
        if fit.weights[k] > 0:
            kept.append(record)
        elif fallback:
            record["why"] = (
                f"the weights fitted within folds scored {held_out:.4f} on their held-out folds,"
                f" no better than the best member alone ({fit.score:.4f}): the blend is that"
                " member"
            )
            dropped.append(record)
        else:
            record["why"] = (
                f"in the fit on all OOF tiles, adding it never raised the blend's tuned OOF metric"
                f" above {fit.score:.4f}; its own {fit.member_scores[k]:.4f}"
            )
            dropped.append(record)
    write_json(
        members_out,
        {
            "method": "fit",
            "oof_tuned": score,  # cv.json's: of the OOF maps the blend wrote
            "held_out_score": float(held_out),
            "members": kept,
            "dropped": dropped,
        },
    )


def _expect_train_order(path: str, ids: list[str], train_ids: list[str]) -> None:
    """Raise unless ``ids`` (of the maps in ``path``) are ``train_ids``, in train.csv order."""
    if ids != train_ids:
        raise InputError(path, "expected one map per train id, in train.csv order")
