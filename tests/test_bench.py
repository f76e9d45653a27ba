"""Every bench entry point still runs (``python -m bench NAME``), so none of them rots.

Run for real, in-process, on tiny synthetic data (saltseg.data.synthetic.generate) or tiny
options, writing only under tmp_path: table, startup (one subcommand), cpu_speed (one setting,
one step), resize_ceiling, ablation_cpu (one variant, seconds of training), pseudo_quality and
empty_gate (on that variant's checkpoint), mosaic (assembly only); slow-marked: batch_augment
(one round of one epoch), cpu_parallel and predict_speed (one Python per job).

Checked more cheaply, because a real run needs hours, real data, a finished run or a GPU:
every bench is imported and answers ``--help`` (benches whose optional packages, the
``[bench]`` extra, are missing are skipped); gpu_fast's collector is checked on hand-made inputs
in tests/test_bench_gpu_fast.py; default_dag and quality_cpu run the DAG (covered by the
workflow tests); reliability runs the slow test suites; gpu_stage1, presets, sections,
section_quality, binarization_rules, gate_rate and mosaic_context need a GPU, trained models
or a finished run.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS = {  # bench -> the optional package it imports (pip install -e .[bench])
    "binarization_rules": "sklearn",
    "empty_gate": "sklearn",
    "presets": "segmentation_models_pytorch",
}


@pytest.fixture(scope="module", autouse=True)
def on_path():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))  # bench/ is a package at the repository root
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from saltseg.data.synthetic import generate

    out = tmp_path_factory.mktemp("bench") / "tgs"
    generate(out)  # 160 train tiles: fold 0 has enough for every selection
    return out


def bench(name: str):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    return importlib.import_module(f"bench.{name}")


def run(name: str, *args: str) -> None:
    bench(name).main(list(args))


def read(path: Path) -> dict:
    result = json.loads(path.read_text())
    assert list(result)[:3] == ["bench", "date", "commit"]  # the shared header comes first
    assert {"machine", "command"} <= set(result)
    return result


def names() -> list[str]:
    """The benches, as bench/__main__.py finds them (read at collection, before any import)."""
    skip = {"__init__", "__main__", "common"}
    return sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in skip)


@pytest.mark.parametrize("name", names())
def test_every_bench_imports_and_answers_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        run(name, "--help")
    assert stop.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_the_entry_point_lists_the_benches(capsys):
    from bench.__main__ import main

    main([])
    out = capsys.readouterr().out
    assert "ablation_cpu" in out and "Ablation of training levers" in out


def test_a_result_is_never_overwritten(tmp_path):
    from bench.common import result_path, write_result

    out = write_result("x", {"n": 1, "command": "c"}, tmp_path / "x.json", quiet=True)
    assert read(out)["n"] == 1 and read(out)["command"] == "c"
    with pytest.raises(FileExistsError):
        write_result("x", {"n": 2}, out, quiet=True)
    (tmp_path / "x-2020-01-01.json").write_text("{}")
    assert result_path("x", tmp_path, "2020-01-01").name == "x-2020-01-01-2.json"


def test_table_reads_old_and_new_headers(tmp_path):
    (tmp_path / "quality-cpu-run2.json").write_text(
        json.dumps({"commit": "a" * 40, "wall_seconds": 3.5, "threads": 2})
    )
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "cpu_speed-2020-01-01.json").write_text(
        json.dumps({"bench": "cpu_speed", "date": "2020-01-01", "commit": "abc", "rows": [1]})
    )
    (tmp_path / "broken.json").write_text("{")
    run("table", "--dir", str(tmp_path), "--out", str(tmp_path / "README.md"))
    text = (tmp_path / "README.md").read_text()
    assert "| quality-cpu-run2.json | quality_cpu | - | `aaaaaaa` | wall_seconds=3.5 |" in text
    assert "| records/cpu_speed-2020-01-01.json | cpu_speed | 2020-01-01 | `abc` | 1 rows |" in text
    assert "unreadable" in text


def test_startup(tmp_path):
    run("startup", "--only", "synth", "--repeats", "1", "--out", str(tmp_path / "s.json"))
    assert "synth" in read(tmp_path / "s.json")["subcommands"]


def test_cpu_speed(tmp_path):
    out = tmp_path / "c.json"
    tiny = ["--steps", "1", "--warmup", "1", "--tiles", "8"]
    run("cpu_speed", "--settings", "bs16", *tiny, "--threads", "1", "--out", str(out))
    assert read(out)["settings"]["bs16"]["train_images_per_s"] > 0


def test_resize_ceiling(tmp_path, data):
    out = tmp_path / "r.json"
    run("resize_ceiling", "--data-dir", str(data), "--sizes", "64", "--out", str(out))
    assert 0 < read(out)["sizes"]["64"]["all_tiles"] <= 1


def test_ablation_then_pseudo_quality_and_empty_gate(tmp_path, data):
    work, variant = tmp_path / "ablation", "base64_lovasz_empty"
    common = ["--data-dir", str(data), "--variants", variant, "--minutes", "0.01"]
    run(
        "ablation_cpu",
        *common,
        "--threads",
        "1",
        "--work",
        str(work),
        "--out",
        str(tmp_path / "a.json"),
    )
    rows = read(tmp_path / "a.json")["rows"]
    assert [row["variant"] for row in rows] == [variant]
    teacher = ["--data-dir", str(data), "--variant", variant, "--work", str(work)]
    out = tmp_path / "p.json"
    run("pseudo_quality", *teacher, "--out", str(out))
    assert read(out)["teacher_variant"] == variant
    pytest.importorskip("sklearn")
    out = tmp_path / "e.json"
    run("empty_gate", *teacher, "--out", str(out))
    assert "gates" in read(out)


def test_mosaic(tmp_path, data):
    out = tmp_path / "m.json"
    run("mosaic", "--data-dir", str(data), "--no-synthetic", "--out", str(out))
    assert read(out)["n_tiles"] > 0


@pytest.mark.slow  # 15 s: two trainings
def test_batch_augment(tmp_path, data):
    out = tmp_path / "b.json"
    run(
        "batch_augment",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
    )
    assert read(out)["models"]


@pytest.mark.slow
def test_cpu_parallel(tmp_path):
    out = tmp_path / "cp.json"
    run("cpu_parallel", "--threads", "1", "--jobs", "2", "--steps", "1", "--out", str(out))
    assert read(out)["rows"]


@pytest.mark.slow
def test_predict_speed(tmp_path):
    out = tmp_path / "ps.json"
    run("predict_speed", "--jobs", "1", "--tiles", "256", "--repeats", "1", "--out", str(out))
    assert read(out)["rows"]


def test_gpu_step_eager_rows_on_cpu(tmp_path):
    """On a CPU only the eager rows run (graphs need CUDA): one net, one batch size."""
    out = tmp_path / "step.json"
    tiny = ["--nets", "unet34_pad128", "--batches", "2", "--warmup", "1", "--steps", "1"]
    run("gpu_step", "--device", "cpu", *tiny, "--out", str(out))
    (row,) = read(out)["rows"]
    assert row["batch"] == 2 and not row["cuda_graph"] and row["images_per_s"] > 0
