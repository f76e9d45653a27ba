"""bench/gpu_fast.py, the collector of the GPU bench, on a hand-made results folder: the
extrapolation to all test tiles, the busy share and the train speed, checked by hand."""

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_fast():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))  # bench/ is a package at the repository root
        yield importlib.import_module("bench.gpu_fast")


def benchmark(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")


def test_wall_time_grows_with_the_test_tiles_each_rule_reads(tmp_path, gpu_fast):
    bench = tmp_path / "benchmarks"
    benchmark(bench / "predict" / "stage1_m_fold0.tsv", 30.0)
    benchmark(bench / "predict" / "stage1_m_fold1.tsv", 40.0)  # the slowest fold counts
    benchmark(bench / "merge_folds" / "stage1_m.tsv", 5.0)
    benchmark(bench / "mosaic" / "mosaic.tsv", 10.0)
    benchmark(bench / "train" / "stage1_m_fold0.tsv", 100.0)  # training: no test tiles
    # 3,400 train tiles in 5 folds (680 OOF), 4,000 of the 18,600 test tiles:
    # predict 40 * ((18600 + 680) / (4000 + 680) - 1) = 124.786, merge 5 * (18600 / 4000 - 1)
    # = 18.25, mosaic 10 * ((3400 + 18600) / (3400 + 4000) - 1) = 19.730
    wall = gpu_fast.extrapolated_wall(tmp_path, 300.0, 3400, 4000, 680)
    assert wall == pytest.approx(300 + 124.786 + 18.25 + 19.730, abs=0.1)
    assert gpu_fast.extrapolated_wall(tmp_path, 300.0, 3400, 0, 680) is None


def test_busy_share_and_train_speed(tmp_path, gpu_fast):
    samples = tmp_path / "samples.csv"
    samples.write_text("t, 20, 1000\nt, 80, 3000\nt, 90, 2000\nt, [N/A], 10\n")
    busy = gpu_fast.busy_share(samples)
    assert busy["samples"] == 3 and busy["mean_percent"] == pytest.approx(63.3)
    assert busy["share_over_50_percent"] == pytest.approx(0.667, abs=1e-3)
    assert busy["peak_memory_mib"] == 3000
    for fold, rates in [("fold0", [10, 100, 120, 110]), ("fold1", [5, 50])]:
        history = tmp_path / "stage1" / "m" / fold / "history.csv"
        history.parent.mkdir(parents=True)
        history.write_text(
            "epoch,images_per_s\n" + "".join(f"{i},{r}\n" for i, r in enumerate(rates))
        )
    # the first epoch (warm-up, capture) is left out: medians 110 and 50
    assert gpu_fast.train_speed(tmp_path) == {
        "stage1/m": {"per_fold": {"fold0": 110, "fold1": 50}, "sum": 160}
    }
