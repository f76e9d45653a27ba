"""Blend weights fitted on OOF maps (saltseg.blend) and the blend step that records them."""

import json

import numpy as np
import pandas as pd

from saltseg import rle
from saltseg.blend import blend_score, fit_weights, fit_within_folds
from saltseg.cli import main
from saltseg.data import kaggle
from saltseg.data.kaggle import is_blank
from saltseg.probs import read_probs, write_probs


def squares(n: int, side: int = 20) -> np.ndarray:
    """``n`` 20x20 truths: tile k has salt in its first k % 4 * 5 rows (tiles 0, 4, ... empty)."""
    truth = np.zeros((n, side, side), bool)
    for k in range(n):
        truth[k, : (k % 4) * 5] = True
    return truth


def test_a_perfect_member_takes_all_the_weight_and_a_costly_one_none():
    truth = squares(8)
    perfect = truth.astype(np.float32) * 0.9
    noise = np.full(truth.shape, 0.6, np.float32)  # every tile all salt at any fit threshold
    fit = fit_weights(truth, [noise, perfect])
    assert fit.weights.tolist() == [0.0, 1.0]
    assert fit.score == 1.0
    # the flat member at its best threshold: above 0.6 it predicts every tile empty and is right
    # on the 2 empty tiles of 8 (0.25); at or under 0.6 all salt, IoU 0.25, 0.5 and 0.75 on the
    # salt tiles and 0 on the empty ones: (0 + 0 + 0.5 + 0) / 4 at most
    assert fit.member_scores[0] == 0.25


def test_two_members_that_each_miss_half_blend_into_the_truth():
    truth = squares(8)
    top = truth.copy()
    top[:, 10:] = False  # member a sees the top half of every mask
    bottom = truth.copy()
    bottom[:, :10] = False  # member b the bottom half
    a = np.where(top, 1.0, np.where(truth, 0.4, 0.0)).astype(np.float32)
    b = np.where(bottom, 1.0, np.where(truth, 0.4, 0.0)).astype(np.float32)
    # alone, each is cut at its best threshold: 0.3 keeps all its 0.4s too, so both are perfect;
    # make each wrong alone: 0.4 -> 0.2 (under every fit threshold)
    a[truth & ~top], b[truth & ~bottom] = 0.2, 0.2
    assert blend_score(truth, a) < 1 and blend_score(truth, b) < 1
    fit = fit_weights(truth, [a, b])
    assert fit.weights.tolist() == [0.5, 0.5]  # the mean: 0.6 on every salt pixel, 0 elsewhere
    assert fit.score == 1.0 > fit.member_scores.max()


def test_weights_within_folds_come_from_the_other_folds_only():
    truth = squares(8)
    good = truth.astype(np.float32)
    bad = np.full(truth.shape, 0.6, np.float32)
    good_on_fold0 = np.where(np.arange(8)[:, None, None] < 4, good, bad)  # member c
    folds = np.repeat([0, 1], 4)
    blended, by_fold = fit_within_folds(truth, [good_on_fold0, bad], folds)
    # fold 0 is blended by what fold 1 says: there c is as bad as the bad member, and ties go
    # to the earlier member; fold 1 by fold 0, where c is perfect
    assert by_fold[0].tolist() == [1.0, 0.0] and by_fold[1].tolist() == [1.0, 0.0]
    assert np.array_equal(blended, good_on_fold0)


def run_blend(synth_dir, tmp_path, members: dict[str, np.ndarray], folds: np.ndarray) -> dict:
    """``saltseg ensemble --fit-folds`` over ``members`` (``stage/model`` -> OOF maps; test maps
    of 0.3); returns members.json, with the blend's cv.json as ``cv`` and OOF maps as ``oof``."""
    ids = pd.read_csv(synth_dir / "train.csv")["id"].tolist()
    test_ids = pd.read_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    parts = []
    for name, oof in members.items():
        folder = tmp_path / "results" / name
        write_probs(folder / "oof.parquet", ids, oof)
        write_probs(folder / "test.parquet", test_ids, np.full((len(test_ids), 101, 101), 0.3))
        (folder / "cv.json").write_text(json.dumps({"metric_tuned": 0.5, "threshold": 0.5}))
        parts.append(folder)
    pd.DataFrame({"id": ids, "fold": folds}).to_csv(tmp_path / "folds.csv", index=False)
    out = tmp_path / "results" / "blend"
    args = ["ensemble", "--data-dir", str(synth_dir), "--fit-folds", str(tmp_path / "folds.csv")]
    args += ["--n-folds", "2", "--oof-parts", *(str(p / "oof.parquet") for p in parts)]
    args += ["--test-parts", *(str(p / "test.parquet") for p in parts)]
    args += ["--cv-parts", *(str(p / "cv.json") for p in parts)]
    args += ["--oof", str(out / "oof.parquet"), "--test", str(out / "test.parquet")]
    args += ["--cv", str(out / "cv.json"), "--members", str(out / "members.json")]
    assert main(args) == 0
    found = json.loads((out / "members.json").read_text())
    found["cv"] = json.loads((out / "cv.json").read_text())
    found["oof"] = read_probs(out / "oof.parquet")[1]
    return found


def synth_truth(synth_dir) -> np.ndarray:
    codes = pd.read_csv(synth_dir / "train.csv", keep_default_na=False)["rle_mask"]
    return np.stack([rle.decode(c, (101, 101)) for c in codes]).astype(np.float32)


def test_the_blend_step_fits_weights_and_records_why_a_member_was_dropped(synth_dir, tmp_path):
    truth = synth_truth(synth_dir)
    members = {"stage1/good": truth * 0.9, "stage2/flat": np.full(truth.shape, 0.55)}
    found = run_blend(synth_dir, tmp_path, members, np.arange(len(truth)) % 2)
    assert found["method"] == "fit"
    assert [m["model"] for m in found["members"]] == ["good"]
    assert found["members"][0]["weight"] == 1.0
    assert found["members"][0]["fold_weights"] == {"0": 1.0, "1": 1.0}
    (dropped,) = found["dropped"]
    assert dropped["model"] == "flat" and dropped["weight"] == 0.0
    assert "never raised" in dropped["why"]
    assert found["cv"]["metric_tuned"] == 1.0
    assert np.allclose(found["oof"], truth * 0.9, atol=1 / 255)


def test_a_blend_that_loses_on_held_out_folds_falls_back_to_its_best_member(synth_dir, tmp_path):
    """Each member is right on one fold and flat on the other: their mean is right everywhere,
    but weights fitted on one fold pick the member that is flat on the other, so the held-out
    blend scores below either member; the blend is then the best member alone."""
    truth = synth_truth(synth_dir)
    folds = np.arange(len(truth)) % 2
    on_fold0 = (folds == 0)[:, None, None]
    right, flat = truth * 0.9, np.full(truth.shape, 0.55, np.float32)
    members = {
        "stage1/a": np.where(on_fold0, right, flat),
        "stage2/b": np.where(on_fold0, flat, right),
    }
    found = run_blend(synth_dir, tmp_path, members, folds)
    assert found["held_out_score"] < found["fit_score"]
    (best,) = found["members"]
    assert best["weight"] == 1.0 and best["fit_score"] == found["fit_score"]
    assert "below the best member alone" in found["dropped"][0]["why"]
    maps = members[f"{best['stage']}/{best['model']}"]
    blank = is_blank(kaggle.load_train(synth_dir, 101).images)
    assert np.allclose(found["oof"][~blank], maps[~blank], atol=1 / 255)
