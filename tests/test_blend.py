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
from saltseg.steps.ensembles import score_oof


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
    top[:, 10:] = False  # member a sees the top half of every mask at 1.0, b the bottom half
    a = np.where(top, 1.0, np.where(truth, 0.2, 0.0)).astype(np.float32)
    b = np.where(truth & ~top, 1.0, np.where(truth, 0.2, 0.0)).astype(np.float32)
    # and each has 10 false pixels at 0.4 in row 19 (never salt): alone, a cut under 0.2 takes
    # them with the salt (the minimum area empties the empty tiles, not a salt tile's 10 extra
    # pixels: IoU at most 100 / 110, 0.9), a cut over 0.2 half of every mask (IoU 0.5, no hit)
    a[:, 19, :10], b[:, 19, 10:] = 0.4, 0.4
    assert blend_score(truth, a) < 1 and blend_score(truth, b) < 1
    fit = fit_weights(truth, [a, b])
    assert fit.weights.tolist() == [0.5, 0.5]  # the mean: 0.6 on every salt pixel, <= 0.2 else
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


def test_each_fold_is_blended_by_the_weights_of_the_other_folds_not_of_all():
    """c is right on fold 0 and flat on fold 1, d the reverse: fitted on all tiles the blend is
    their mean (right everywhere), but fold 0 is blended by what fold 1 says (d alone) and fold 1
    by fold 0 (c alone); a fit on all tiles would give both folds the mean."""
    truth = squares(8)
    folds = np.repeat([0, 1], 4)
    on_fold0 = (folds == 0)[:, None, None]
    right, flat = truth.astype(np.float32), np.full(truth.shape, 0.6, np.float32)
    c, d = np.where(on_fold0, right, flat), np.where(on_fold0, flat, right)
    assert fit_weights(truth, [c, d]).weights.tolist() == [0.5, 0.5]
    blended, by_fold = fit_within_folds(truth, [c, d], folds)
    assert by_fold[0].tolist() == [0.0, 1.0] and by_fold[1].tolist() == [1.0, 0.0]
    assert np.array_equal(blended, flat)  # each fold blended with its flat member


def run_blend(synth_dir, tmp_path, members: dict[str, np.ndarray], folds: np.ndarray) -> dict:
    """``saltseg ensemble --fit-folds`` over ``members`` (``stage/model`` -> OOF maps, with their
    own cv.json as the merge step writes it; test maps of 0.3, 0.5, ...); returns members.json,
    with the blend's cv.json as ``cv``, OOF maps as ``oof`` and the members' cv.json as
    ``member_cv``. Every member's score there is its cv.json's, the blend's its own cv.json's."""
    train = kaggle.load_train(synth_dir, 101)
    test_ids = pd.read_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    parts, member_cv = [], {}
    for k, (name, oof) in enumerate(members.items()):
        folder = tmp_path / "results" / name
        write_probs(folder / "oof.parquet", train.ids, oof)
        flat = np.full((len(test_ids), 101, 101), 0.3 + 0.2 * k)
        write_probs(folder / "test.parquet", test_ids, flat)
        member_cv[name] = score_oof(train, read_probs(folder / "oof.parquet")[1])
        (folder / "cv.json").write_text(json.dumps(member_cv[name]))
        parts.append(folder)
    pd.DataFrame({"id": train.ids, "fold": folds}).to_csv(tmp_path / "folds.csv", index=False)
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
    found["member_cv"] = member_cv
    for member in found["members"] + found["dropped"]:  # one scorer: the summary's oof_tuned
        name = f"{member['stage']}/{member['model']}"
        assert member["oof_tuned"] == member_cv[name]["metric_tuned"], name
    assert found["cv"]["metric_tuned"] == found["oof_tuned"]  # the blend's, from its own OOF
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
    assert found["held_out_score"] < found["oof_tuned"]
    (best,) = found["members"]
    assert best["weight"] == 1.0 and best["oof_tuned"] == found["oof_tuned"]
    assert "no better than the best member alone" in found["dropped"][0]["why"]
    name = f"{best['stage']}/{best['model']}"
    assert np.array_equal(found["oof"], read_probs(tmp_path / "results" / name / "oof.parquet")[1])


def test_one_hot_weights_make_the_blend_that_member_though_the_folds_fits_mixed(
    synth_dir, tmp_path
):
    """a is right but for one weak salt tile (0.45) and one empty tile with a 0.6 block per fold:
    no cut takes both. b is right on fold 0 and, on fold 1, all salt on the empty tiles and
    none on the salt ones. Fitted on all tiles the blend is a alone (b costs fold 1 more than it
    gives fold 0); fold 1's weights, fitted on fold 0, are b's. The blend's OOF, cv.json and test
    maps must all be a's: the predictor it submits, not a per-fold mixture that scores lower."""
    train = kaggle.load_train(synth_dir, 101)
    truth, blank = train.masks.astype(np.float32), is_blank(train.images)
    salt = truth.reshape(len(truth), -1).any(axis=1)
    folds = np.zeros(len(truth), int)
    for group in (salt & ~blank, ~salt & ~blank, blank):  # salt and empty tiles in both folds
        folds[np.flatnonzero(group)] = np.arange(group.sum()) % 2
    a = truth * 0.9
    b = np.where((folds == 0)[:, None, None], truth * 0.9, np.where(salt, 0.0, 1.0)[:, None, None])
    for fold in (0, 1):
        weak = np.flatnonzero(salt & ~blank & (folds == fold))[0]
        a[weak] = truth[weak] * 0.45
        a[np.flatnonzero(~salt & ~blank & (folds == fold))[0], :50, :40] = 0.6
    found = run_blend(synth_dir, tmp_path, {"stage1/a": a, "stage2/b": b}, folds)
    (member,) = found["members"]
    assert (member["model"], member["weight"]) == ("a", 1.0)
    assert member["fold_weights"] == {"0": 1.0, "1": 0.0}  # fold 1 blended by b, fitted on 0
    assert found["dropped"][0]["fold_weights"] == {"0": 0.0, "1": 1.0}
    assert "never raised" in found["dropped"][0]["why"]
    assert found["held_out_score"] < found["oof_tuned"] == member["oof_tuned"]
    assert np.array_equal(found["oof"], read_probs(tmp_path / "results/stage1/a/oof.parquet")[1])
    test = read_probs(tmp_path / "results/blend/test.parquet")[1]
    assert np.array_equal(test, read_probs(tmp_path / "results/stage1/a/test.parquet")[1])
