"""The results layout and the cut resolver: where rules and steps take paths and cuts from."""

import json
from pathlib import Path

import pytest

from saltseg import layout
from saltseg.binarize import Cut, resolve_cut
from saltseg.errors import InputError


def test_paths_and_snakemake_patterns_come_from_the_same_calls():
    assert layout.fold_file("stage1", "unet", 3, "model.pt") == "results/stage1/unet/fold3/model.pt"
    assert layout.fold_file("{stage}", "{model}", "{fold}", "oof.parquet") == (
        "results/{stage}/{model}/fold{fold}/oof.parquet"
    )
    assert layout.ensemble_file("stage2", layout.CV) == "results/stage2/ensemble/cv.json"
    assert layout.blend_file(layout.MEMBERS) == "results/blend/members.json"
    assert layout.pseudo_file("stage1", 0) == "results/pseudo/stage1/fold0.parquet"
    assert layout.log("train", "x") == "results/logs/train/x.log"
    assert layout.benchmark("train", "x") == "results/benchmarks/train/x.tsv"


def test_locate_names_stage_model_and_fold_of_a_file():
    place = layout.locate("w/results/stage1/unet/fold2/metrics.json")
    assert (place.stage, place.model, place.fold) == ("stage1", "unet", 2)
    assert place.model_dir == Path("w/results/stage1/unet")
    assert layout.locate(layout.ensemble_file("stage3", "cv.json")).model == "ensemble"
    with pytest.raises(InputError, match="expected a file under <stage>/<model>/"):
        layout.locate("cv.json")


def test_resolve_cut_fixed_tuned_or_a_number(tmp_path):
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"threshold": 0.4, "min_area": 20, "threshold_pixels": 0.45}))
    assert resolve_cut("fixed", cv) == Cut()
    assert resolve_cut("tuned", cv) == Cut(0.4, 20, 0.0)
    assert resolve_cut("tuned", cv, pixels=True) == Cut(0.45)
    assert resolve_cut("0.3", None) == Cut(0.3)
    with pytest.raises(InputError, match=r"--threshold: expected .* got '1.5'"):
        resolve_cut("1.5", cv)
