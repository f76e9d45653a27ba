"""The levers of issue 13: a training budget in minutes, EMA weights, the empty-tile head and the
tile-level emptiness rule (threshold and minimum area tuned together), and coverage buckets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_training import (
    assert_same_weights,
    params,
    run_fit,
    run_killed_then_resumed,
    toy_tiles,
)
from tiny import TINY_MODEL

from saltseg.binarize import (
    Cut,
    best_binarization,
    best_cell,
    binarization_table,
    binarize,
    remove_small,
    tune,
)
from saltseg.losses import build_loss
from saltseg.losses.empty import empty_loss, empty_target
from saltseg.metrics import bucket_scores, coverage_bucket, tile_scores
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.training import budget, loop
from saltseg.training.budget import budget_epochs, predict_forwards, slot_minutes


@pytest.mark.parametrize(
    "minutes, done, spent, seconds, snapshots, expected",
    [
        (2, 0, 0, 25, 0, 5),  # 120 s / 25 s = 4.8 -> 5 epochs: 5 s over, not 20 s unused
        (2, 0, 0, 35, 0, 3),  # 3.4 -> 3 epochs: 15 s unused, not 20 s over
        (2, 0, 0, 25, 3, 6),  # 4.8 epochs: 2 cycles of 3 (6 epochs) come nearer than 1 (3)
        (2, 0, 0, 40, 3, 3),  # 3 epochs: one cycle of 3
        (10, 0, 0, 60, 2, 10),  # 10 epochs in 2 cycles of 5
        (0.1, 0, 0, 60, 2, 2),  # the budget fits none: one epoch per cycle
        (2, 1, 40, 20, 0, 5),  # a slow first epoch: 1 done + 80 s left / 20 s
        (2, 3, 150, 20, 0, 3),  # over budget: the epochs done, no more
        (2, 3, 100, 20, 2, 6),  # 4 fit, but 3 epochs of the first cycle are done: 2 x 3
    ],
)
def test_budget_sizes_epochs_to_whole_cycles(minutes, done, spent, seconds, snapshots, expected):
    phase = {"minutes": minutes, "snapshots": snapshots}
    assert budget_epochs(phase, done, spent, seconds) == expected


def test_a_budget_phase_sizes_its_cosine_after_the_first_epoch(tmp_path, monkeypatch):
    costs = []

    def sized(phase, done, spent, pace):
        costs.append((done, pace))
        return 4

    monkeypatch.setattr(budget, "budget_epochs", sized)
    result = run_fit(params(minutes=5, schedule="cosine", snapshots=2, epochs=1), tmp_path)
    history = result["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    # re-sized after each epoch of the first cycle (2 epochs), pace at least the steady seconds
    assert [done for done, _ in costs] == [1, 2]
    assert costs[0][1] >= history[0]["steady_seconds"] > 0
    # two cycles of 2 epochs: 0.01, cos half-way, restart, cos half-way
    half = 0.01 * (1 + math.cos(math.pi / 2)) / 2
    assert [row["lr"] for row in history] == pytest.approx([0.01, half, 0.01, half])
    assert len(result["snapshots"]) == 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["phase_epochs"] == 4  # a resumed run keeps the size it measured


def test_a_budget_phase_re_sizes_when_its_first_epoch_was_slow(tmp_path, monkeypatch):
    """A first epoch of 60 s (a job starting next to it) then epochs of 10 s, in 2 minutes.

    Sized once from the first epoch, the phase would run 2 epochs and stop at 70 s. Re-sized
    after each epoch at the median pace of the last three: 2, then 3 epochs (pace 35 s), then 7
    (pace 10 s), ending on the budget.
    """
    real_epoch, real_validate = loop._epoch, loop._validate
    paces = iter([60.0] + [10.0] * 20)

    def timed_epoch(*args):
        seconds = next(paces)
        return {**real_epoch(*args), "seconds": seconds, "steady_seconds": seconds}

    monkeypatch.setattr(loop, "_epoch", timed_epoch)
    monkeypatch.setattr(loop, "_validate", lambda *a: {**real_validate(*a), "val_seconds": 0.0})
    history = run_fit(params(minutes=2, schedule="cosine", snapshots=1), tmp_path)["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4, 5, 6]
    assert sum(row["seconds"] for row in history) == 120
    # the cosine follows each size: epoch 1 of 2, epoch 2 of 3, then epochs 3-6 of 7
    factors = [1, 1 / 2, 1 / 4] + [(1 + math.cos(math.pi * e / 7)) / 2 for e in (3, 4, 5, 6)]
    assert [row["lr"] for row in history] == pytest.approx([0.01 * f for f in factors])


@pytest.mark.parametrize(
    "p, spent_before, predict, expected",
    [
        (0, 0, 600, 30.0),  # (3000 - 600) s left, 3/4 of it to phase 0: 1800 s
        (1, 1800, 600, 10.0),  # phase 0 kept to its share: the rest, 600 s
        (1, 1900, 600, 500 / 60),  # phase 0 ran 100 s over: phase 1 gives them back
        (1, 2500, 600, 0.0),  # nothing left
    ],
)
def test_a_slot_splits_what_the_prediction_leaves_over_the_phases(
    p, spent_before, predict, expected
):
    phases = [{"minutes": 30}, {"epochs": 2}, {"minutes": 10}]  # phase 1: epochs, not counted
    q = 0 if p == 0 else 2
    assert slot_minutes(phases, q, 50, spent_before, predict) == pytest.approx(expected)


@pytest.mark.slow  # fast: test_a_slot_splits_what_the_prediction_leaves_over_the_phases
def test_a_slot_budget_times_the_prediction_at_the_validation_pace(tmp_path, monkeypatch):
    """Slot 5 min; epochs of 10 s, validations of 2 s for the 8 validation tiles (0.25 s a pass),
    and 480 prediction passes: 120 s. The phases (minutes 2 and 1) share the other 180 s 2:1.

    Epoch 0 of phase 0 is sized before any validation (3.33 min: 2/3 of the slot), then every
    epoch from the first validation on at 2 min: 10 epochs of 12 s. Phase 1 gets what is left,
    300 - 120 - 120 s = 1 min: 5 epochs of 12 s. Training and prediction fill the slot.
    """
    real_epoch, real_validate = loop._epoch, loop._validate
    monkeypatch.setattr(
        loop, "_epoch", lambda *a: {**real_epoch(*a), "seconds": 10.0, "steady_seconds": 10.0}
    )
    monkeypatch.setattr(loop, "_validate", lambda *a: {**real_validate(*a), "val_seconds": 2.0})
    phase = params(schedule="cosine", snapshots=1)["phases"][0]
    p = {
        **params(),
        "slot_minutes": 5,
        "phases": [{**phase, "minutes": 2}, {**phase, "minutes": 1}],
    }
    torch.manual_seed(0)
    model = build_model("unet", 101, **p["model"])
    runtime = resolve_runtime("cpu", "false", "false")
    history = loop.fit(model, p, toy_tiles(16, 0), toy_tiles(8, 1), runtime, tmp_path, 0, 0, 480)[
        "history"
    ]
    budgets = [(row["phase"], round(row["budget_minutes"], 3)) for row in history]
    assert budgets == [(0, 3.333)] + [(0, 2.0)] * 9 + [(1, 1.0)] * 5
    spent = sum(row["seconds"] + row["val_seconds"] for row in history)
    assert spent + 480 * 2.0 / 8 == 5 * 60


def test_the_prediction_passes_count_val_and_test_tiles_tta_and_snapshots():
    phases = [{"minutes": 2}, {"minutes": 1, "snapshots": 2}]
    slot = {"slot_minutes": 5, "phases": phases}
    assert predict_forwards(slot, 3, 5, ("none", "hflip")) == (3 + 5) * 2 * 2
    assert predict_forwards({"phases": phases}, 3, 5, ("none",)) == 0  # no slot


def test_validation_runs_every_n_epochs_and_at_the_end(tmp_path):
    p = {**params(epochs=5), "val_every": 2}
    history = run_fit(p, tmp_path)["history"]
    validated = [row["epoch"] for row in history if "val_metric" in row]
    assert validated == [1, 3, 4]


def test_ema_averages_weights_by_hand():
    model = torch.nn.Linear(2, 1)
    ema = loop.build_ema(model, 0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    assert loop.build_ema(model, None) is None


def test_an_ema_phase_keeps_the_average_not_the_last_weights(tmp_path):
    result = run_fit(params(epochs=2, ema=0.5), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    raw = state["model"]
    snapshot = result["snapshots"][0]
    name = next(k for k in snapshot if k.endswith("weight") and snapshot[k].dim() == 4)
    assert torch.allclose(snapshot[name], averaged[name])
    assert not torch.allclose(raw[name], averaged[name])  # the average lags the last step


def test_empty_target_and_loss_by_hand():
    target = torch.zeros(3, 1, 4, 4)
    target[1, 0, 2, 2] = 1
    assert empty_target(target).tolist() == [1.0, 0.0, 1.0]
    logits = torch.tensor([[2.0], [-1.0], [0.0]])
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = -(math.log(sigmoid(2.0)) + math.log(1 - sigmoid(-1.0)) + math.log(0.5)) / 3
    assert float(empty_loss(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_the_empty_head_is_trained_in_training_mode_only():
    model = build_model("unet", 101, **TINY_MODEL, empty_head=True)
    x = torch.rand(2, 1, 101, 101)
    out = model.train()(x)
    assert out["logits"].shape == (2, 1, 101, 101) and out["empty_logit"].shape == (2, 1)
    assert model.eval()(x).shape == (2, 1, 101, 101)
    target = torch.zeros(2, 1, 101, 101)
    target[0, 0, :10, :10] = 1
    combined = build_loss("bce_dice", empty_weight=0.05)(out, target)
    plain = build_loss("bce_dice")(out, target)
    bce = F.binary_cross_entropy_with_logits(out["empty_logit"].flatten(), torch.tensor([0.0, 1.0]))
    assert combined.item() == pytest.approx((plain + 0.05 * bce).item(), rel=1e-5)
    with pytest.raises(ValueError, match="empty_head"):
        build_loss("bce_dice", 0.05)({"logits": out["logits"]}, target)


def test_a_model_with_an_empty_head_trains(tmp_path):
    p = params(epochs=2, empty_weight=0.05)
    p["model"] = {**TINY_MODEL, "empty_head": True}
    history = run_fit(p, tmp_path)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def truth_and_probs():
    """Tile 0 empty with a 5-pixel false blob; tile 1 salt (50 px) found; tile 2 empty, clean."""
    truth = np.zeros((3, 10, 10), bool)
    truth[1, :5, :] = True
    probs = np.zeros((3, 10, 10))
    probs[0, 0, :5] = 0.9
    probs[1, :5, :] = 0.8
    return truth, probs


def test_best_binarization_finds_the_area_rule_by_hand():
    truth, probs = truth_and_probs()
    off = np.array([0.0])
    threshold, min_area, min_peak, score = best_binarization(truth, probs, min_peaks=off)
    # any threshold in [0.05, 0.8) keeps tile 1 whole; 10 is the smallest grid area in (5, 50]
    assert (threshold, min_area, min_peak, score) == (0.5, 10, 0.0, 1.0)
    assert best_binarization(truth, probs, min_areas=np.array([0]), min_peaks=off)[1:] == (
        0,
        0.0,
        2 / 3,
    )
    masks = binarize(probs, np.arange(300).reshape(3, 10, 10).astype(np.uint8), Cut(0.5, 10))
    assert masks.reshape(3, -1).sum(1).tolist() == [0, 50, 0]
    assert remove_small(probs > 0.5, 6).reshape(3, -1).sum(1).tolist() == [0, 50, 0]


def test_the_peak_gate_empties_tiles_whose_largest_probability_is_low():
    """Tile 0: an empty truth with a faint 30-pixel blob (0.6); tile 1: a 20-pixel salt body at
    0.95; tile 2: a 40-pixel body at 0.65 with a 0.9 core. Areas cannot split tile 0 (30 px) from
    tile 1 (20 px); the peak can: gates in (0.6, 0.9] empty tile 0 alone."""
    truth = np.zeros((3, 10, 10), bool)
    truth[1, :2, :] = True
    truth[2, 4:8, :] = True
    probs = np.zeros((3, 10, 10))
    probs[0, 5:8, :] = 0.6
    probs[1, :2, :] = 0.95
    probs[2, 4:8, :] = 0.65
    probs[2, 5, 5] = 0.9
    thresholds, areas, peaks, table = binarization_table(
        truth, probs, np.array([0.5]), np.array([0, 25]), np.array([0.0, 0.7, 0.95])
    )
    # by hand, tile scores summed over tiles 0, 1, 2: no rule keeps tile 0's blob (0 + 1 + 1);
    # peak 0.7 empties tile 0 (1 + 1 + 1); peak 0.95 tiles 0 and 2 (1 + 1 + 0); area 25 empties
    # tile 1 (0 + 0 + 1), with peak 0.7 tiles 0 and 1 (1 + 0 + 1), with 0.95 all but 2 (1 + 0 + 0)
    assert table[0].tolist() == [[2 / 3, 1.0, 2 / 3], [1 / 3, 2 / 3, 1 / 3]]
    assert best_cell(thresholds, areas, peaks, table) == (0.5, 0, 0.7, 1.0)
    images = np.arange(300).reshape(3, 10, 10).astype(np.uint8)
    masks = binarize(probs, images, Cut(0.5, 0, 0.7))
    assert masks.reshape(3, -1).sum(1).tolist() == [0, 20, 40]
    assert binarize(probs, images, Cut(0.5)).reshape(3, -1).sum(1).tolist() == [30, 20, 40]


def test_the_tuned_cut_applies_as_tuned_at_a_quantisation_level():
    """Salt read back from a probability file at 102/255: float32 0.40000001, equal to float32
    0.4 but above float64 0.4. The tuning (in float64) takes 0.4 as the threshold nearest 0.5
    that keeps the salt; binarize must keep it too (it compared in float32 before 206e570 and
    emptied every tile)."""
    truth = np.zeros((4, 10, 10), bool)
    truth[1:, :5] = True
    probs = (np.where(truth, 102, 0) / 255).astype(np.float32)
    tuned = tune(truth, probs)
    assert (tuned.cut.threshold, tuned.metric) == (0.4, 1.0)
    images = np.arange(400).reshape(4, 10, 10).astype(np.uint8)
    assert np.array_equal(binarize(probs, images, tuned.cut), truth)
    assert np.array_equal(binarize(probs, images, Cut(0.4, 0, 0.4)), truth)  # the peak too


def test_the_binarization_table_counts_as_the_metric_scores_each_cut():
    """Every cell of the table against tile_scores of that cut applied by hand (random maps at
    the quantisation levels of a probability file, thresholds given out of order)."""
    rng = np.random.default_rng(0)
    truth = rng.random((12, 16, 16)) < np.linspace(0, 0.6, 12)[:, None, None]
    probs = np.rint(np.clip(truth * 0.5 + rng.random(truth.shape) * 0.6, 0, 1) * 255) / 255
    probs = probs.astype(np.float32)
    thresholds, areas, peaks = np.array([0.6, 0.2, 0.4, 0.5]), np.array([0, 30]), np.array([0, 0.9])
    table = binarization_table(truth, probs, thresholds, areas, peaks)[3]
    for i, t in enumerate(thresholds):
        for j, area in enumerate(areas):
            for k, peak in enumerate(peaks):
                pred = probs > np.float64(t)
                pred[(pred.sum(axis=(1, 2)) < area) | (probs.max(axis=(1, 2)) < peak)] = False
                assert table[i, j, k] == pytest.approx(tile_scores(truth, pred).mean(), abs=1e-12)


def test_bucket_scores_by_hand():
    truth = np.zeros((4, 10, 10), bool)
    truth[1, 0, 0] = True  # 1 % salt: under_1pct holds coverage <= 1 %
    truth[2, :5, :] = True  # 50 %
    truth[3, :1, :5] = True  # 5 %
    assert coverage_bucket(truth).tolist() == ["empty", "under_1pct", "over_10pct", "1_to_10pct"]
    pred = truth.copy()
    pred[0, 0, 0] = True  # a false pixel on the empty tile: 0
    pred[3] = False  # the 5 % tile missed: 0
    scores = bucket_scores(truth, pred)
    assert scores["empty"] == {"n": 1, "score": 0.0}
    assert scores["under_1pct"] == {"n": 1, "score": 1.0}
    assert scores["1_to_10pct"] == {"n": 1, "score": 0.0}
    assert scores["over_10pct"] == {"n": 1, "score": 1.0}
    assert scores["salt"] == {"n": 3, "score": pytest.approx(2 / 3)}


@pytest.mark.slow  # fast: the budget sizing tests and test_training's killed-run resume
def test_a_budget_run_resumes_with_the_epochs_it_measured(tmp_path, monkeypatch):
    sized = []
    monkeypatch.setattr(
        budget, "budget_epochs", lambda phase, done, spent, pace: sized.append((done, spent)) or 3
    )
    p = params(minutes=5, schedule="cosine", snapshots=1)
    straight = run_fit(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch, saves=1)
    # every epoch re-sizes a one-cycle phase; the resumed run counts the killed run's epoch 0
    assert [done for done, _ in sized] == [1, 2, 3, 1, 2, 3]
    assert sized[4][1] >= resumed["history"][0]["seconds"] > 0
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


@pytest.mark.slow  # fast: test_an_ema_phase_keeps_the_average_not_the_last_weights and the
# killed-run resume of test_training
def test_a_killed_ema_run_resumes_to_the_same_average(tmp_path, monkeypatch):
    p = params(epochs=3, ema=0.5)
    straight = run_fit(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch)
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


def test_empty_weight_on_a_deep_supervision_loss_is_refused():
    with pytest.raises(ValueError, match="empty_weight"):
        build_loss("deep_supervision", empty_weight=0.05)
