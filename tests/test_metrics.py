import numpy as np
import pytest

from saltseg.binarize import best_threshold
from saltseg.metrics import competition_metric, tile_scores


def square(size: int, n: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[:n, :n] = True
    return mask


def test_empty_and_nonempty_combinations():
    empty, salt = np.zeros((5, 5), bool), square(5, 2)
    truth = np.stack([empty, empty, salt, salt])
    pred = np.stack([empty, salt, empty, salt])
    assert tile_scores(truth, pred).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert competition_metric(truth, pred) == 0.5


@pytest.mark.parametrize(
    "inter_px, union_px, expected",
    [
        # IoU 0.75 beats 0.50, 0.55, 0.60, 0.65, 0.70 -> 5 of 10 thresholds
        (75, 100, 0.5),
        # IoU exactly 0.5 is not > 0.5 -> 0 hits
        (50, 100, 0.0),
        # IoU 0.7 exactly: hits 0.50..0.65 -> 4 of 10
        (70, 100, 0.4),
        # IoU 0.96 beats every threshold up to 0.95
        (96, 100, 1.0),
        # IoU 0.95 exactly: hits 0.50..0.90 -> 9 of 10
        (95, 100, 0.9),
    ],
)
def test_iou_threshold_hits_by_hand(inter_px, union_px, expected):
    truth = np.zeros((1, 10, 10), bool)
    pred = np.zeros((1, 10, 10), bool)
    truth.flat[:union_px] = True
    pred.flat[:inter_px] = True  # pred inside truth: IoU = inter / union
    assert tile_scores(truth, pred)[0] == pytest.approx(expected)


def test_best_threshold_finds_the_cut_between_classes():
    truth = np.stack([square(10, 5), np.zeros((10, 10), bool)])
    probs = np.stack([np.where(truth[0], 0.7, 0.0), np.full((10, 10), 0.3)])
    threshold, score = best_threshold(truth, probs)
    assert 0.3 <= threshold < 0.7
    assert score == 1.0
    assert competition_metric(truth, probs > 0.2) == 0.5  # the empty tile turns full


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        tile_scores(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))
