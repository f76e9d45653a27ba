"""The command line: each step reads real files, and bad input ends in one line with status 2."""

import json
import shutil

import numpy as np
import pandas as pd

from saltseg import rle
from saltseg.cli import main
from saltseg.data import kaggle
from saltseg.data.images import write_png
from saltseg.probs import read_probs, write_probs


def test_folds_command_writes_every_train_id(synth_dir, tmp_path):
    out = tmp_path / "folds.csv"
    assert main(["folds", "--data-dir", str(synth_dir), "--out", str(out), "--n-folds", "3"]) == 0
    folds = pd.read_csv(out)
    train = pd.read_csv(synth_dir / "train.csv")
    assert folds["id"].tolist() == train["id"].tolist()
    assert set(folds["fold"]) == {0, 1, 2}


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    status = main(["folds", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.count("\n") == 0
    assert err.startswith("saltseg folds: error: ") and "missing" in err
    assert not (tmp_path / "f").exists()


def test_postprocess_then_submit_threshold_and_empty_blank_tiles(synth_dir, tmp_path):
    data = shutil.copytree(synth_dir, tmp_path / "data")
    ids = pd.read_csv(data / "sample_submission.csv")["id"].tolist()
    write_png(data / "test" / "images" / f"{ids[1]}.png", np.full((101, 101), 97, np.uint8))
    blank = kaggle.is_blank(kaggle.load_test(data, 101).images)
    assert blank[1]
    train = kaggle.load_train(data, 101)
    probs = np.full((len(ids), 101, 101), 0.3, np.float32)
    probs[:, :10, :] = 0.9
    write_probs(tmp_path / "test.parquet", ids[::-1], probs)  # order must not matter
    write_probs(tmp_path / "oof.parquet", train.ids, train.masks * 0.8)
    (tmp_path / "cv.json").write_text(json.dumps({"threshold": 0.2}))
    pd.DataFrame({"id": train.ids, "fold": np.arange(len(train)) % 2}).to_csv(
        tmp_path / "folds.csv", index=False
    )
    layout = pd.DataFrame(
        {"id": train.ids + ids, "mosaic_id": range(len(train) + len(ids)), "x": 0, "y": 0}
    )  # every tile alone: the rules cannot act
    layout.to_parquet(tmp_path / "tiles.parquet")
    for threshold, expected_px in [("fixed", 10 * 101), ("tuned", 101 * 101)]:
        out = tmp_path / threshold
        args = [
            "postprocess",
            "--data-dir",
            str(data),
            "--layout",
            str(tmp_path / "tiles.parquet"),
            "--folds",
            str(tmp_path / "folds.csv"),
            "--n-folds",
            "2",
            "--oof",
            str(tmp_path / "oof.parquet"),
            "--probs",
            str(tmp_path / "test.parquet"),
            "--cv",
            str(tmp_path / "cv.json"),
            "--threshold",
            threshold,
            "--masks",
            str(out / "masks.parquet"),
            "--report",
            str(out / "report.json"),
            "--changes",
            str(out / "changes.csv"),
        ]
        assert main(args) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["threshold"] == (0.5 if threshold == "fixed" else 0.2)
        assert report["oof_before"] == report["oof_after"] == 1.0 and report["applied"]
        assert (
            main(
                [
                    "submit",
                    "--masks",
                    str(out / "masks.parquet"),
                    "--data-dir",
                    str(data),
                    "--out",
                    str(out / "sub.csv"),
                ]
            )
            == 0
        )
        sub = pd.read_csv(out / "sub.csv", keep_default_na=False)
        assert sub["id"].tolist() == ids
        sizes = np.array([rle.decode(code, (101, 101)).sum() for code in sub["rle_mask"]])
        assert (sizes[blank] == 0).all()
        assert (sizes[~blank] == expected_px).all()


def test_submit_names_a_missing_test_id(synth_dir, tmp_path, capsys):
    ids = pd.read_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    write_probs(tmp_path / "t.parquet", ids[1:], np.zeros((len(ids) - 1, 101, 101)))
    status = main(
        [
            "submit",
            "--masks",
            str(tmp_path / "t.parquet"),
            "--data-dir",
            str(synth_dir),
            "--out",
            str(tmp_path / "s.csv"),
        ]
    )
    assert status == 2
    assert f"{ids[0]!r} has none" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_ensemble_weights_average_the_maps(synth_dir, tmp_path):
    train_ids = pd.read_csv(synth_dir / "train.csv")["id"].tolist()
    test_ids = pd.read_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    for name, value in [("a", 0.2), ("b", 0.8)]:
        write_probs(
            tmp_path / f"{name}_oof.parquet", train_ids, np.full((len(train_ids), 101, 101), value)
        )
        write_probs(
            tmp_path / f"{name}_test.parquet", test_ids, np.full((len(test_ids), 101, 101), value)
        )
    args = [
        "ensemble",
        "--data-dir",
        str(synth_dir),
        "--oof-parts",
        str(tmp_path / "a_oof.parquet"),
        str(tmp_path / "b_oof.parquet"),
        "--test-parts",
        str(tmp_path / "a_test.parquet"),
        str(tmp_path / "b_test.parquet"),
        "--weights",
        "1",
        "3",
        "--oof",
        str(tmp_path / "oof.parquet"),
        "--test",
        str(tmp_path / "test.parquet"),
        "--cv",
        str(tmp_path / "cv.json"),
    ]
    assert main(args) == 0
    _, test = read_probs(tmp_path / "test.parquet")
    assert np.allclose(test, (0.2 + 3 * 0.8) / 4, atol=1 / 255)
    cv = json.loads((tmp_path / "cv.json").read_text())
    assert set(cv) == {
        "n_tiles",
        "metric_at_0.5",
        "threshold",
        "min_area",
        "min_peak",
        "metric_tuned",
        "buckets",
        "threshold_pixels",
    }
    assert sum(b["n"] for name, b in cv["buckets"].items() if name != "salt") == cv["n_tiles"]
    assert cv["n_tiles"] == len(train_ids)


def test_an_unwritable_output_is_one_line_naming_it(synth_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "folds.csv"  # its folder cannot be made: a file stands there
    assert main(["folds", "--data-dir", str(synth_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(f"saltseg folds: error: {out}: could not write (")


def test_an_ensemble_of_one_member_copies_that_member(synth_dir, tmp_path, capsys):
    train_ids = pd.read_csv(synth_dir / "train.csv")["id"].tolist()
    test_ids = pd.read_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    rng = np.random.default_rng(0)
    write_probs(tmp_path / "m_oof.parquet", train_ids, rng.random((len(train_ids), 101, 101)))
    write_probs(tmp_path / "m_test.parquet", test_ids, rng.random((len(test_ids), 101, 101)))

    def ensemble(out: str, *extra: str, oof: str = "m_oof.parquet") -> int:
        return main(
            [
                "ensemble",
                "--data-dir",
                str(synth_dir),
                "--oof-parts",
                str(tmp_path / oof),
                "--test-parts",
                str(tmp_path / "m_test.parquet"),
                "--weights",
                "0.7",
                *extra,
                "--oof",
                str(tmp_path / out / "oof.parquet"),
                "--test",
                str(tmp_path / out / "test.parquet"),
                "--cv",
                str(tmp_path / out / "cv.json"),
            ]
        )

    assert ensemble("averaged") == 0  # read, averaged, scored: the member's own cv.json
    member_cv = tmp_path / "averaged" / "cv.json"
    assert ensemble("copied", "--cv-parts", str(member_cv)) == 0
    for name in ("oof.parquet", "test.parquet"):
        ids, maps = read_probs(tmp_path / "copied" / name)
        want_ids, want = read_probs(tmp_path / "averaged" / name)
        assert ids == want_ids and np.array_equal(maps, want)
    copied_cv = json.loads((tmp_path / "copied" / "cv.json").read_text())
    assert copied_cv == json.loads(member_cv.read_text())
    assert copied_cv["n_tiles"] == len(train_ids)

    write_probs(tmp_path / "rev.parquet", train_ids[::-1], np.zeros((len(train_ids), 101, 101)))
    assert ensemble("bad", "--cv-parts", str(member_cv), oof="rev.parquet") == 2
    assert "rev.parquet: expected one map per train id" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_each_subcommand_names_its_steps_keyword_arguments():
    """Every option's ``dest`` is a keyword of the step the subcommand runs, and together they
    give every keyword the step requires: the table in ``saltseg.cli`` is the only description."""
    import importlib
    import inspect

    from saltseg.cli import COMMANDS, Derived

    for name, spec in COMMANDS.items():
        module, _, function = spec.step.partition(":")
        params = inspect.signature(getattr(importlib.import_module(module), function)).parameters
        given = {
            o.dest for o in spec.options if isinstance(o, Derived) or (o.passed and not o.spread)
        }
        required = {
            n
            for n, p in params.items()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        assert given <= set(params), (name, given - set(params))
        assert required <= given, (name, required - given)
