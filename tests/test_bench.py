"""Every bench entry point still runs (``python -m bench NAME``), so none of them rots.

Run for real, in-process, on tiny synthetic data (saltseg.data.synthetic.generate) or tiny
options, writing only under tmp_path: startup (one subcommand), cpu_speed (two settings, one
step), mosaic (assembly only), gpu_step (its eager rows), default_dag (with the DAG faked: that
the speed probe is recorded); the fold-0 helper (bench/fold0.py) on synthetic data and by hand.

Checked more cheaply, because a real run needs hours, real data, a finished run or a GPU:
every bench is imported and answers ``--help`` (benches whose optional packages, the
``[bench]`` extra, are missing are skipped); gpu_check's collector is checked on hand-made inputs
in tests/test_gpu_check.py; default_dag and quality_cpu run the DAG (covered by the
workflow tests); reliability runs the slow test suites; presets, sections,
section_quality, pseudo_quality, recipe_variants and stages_pay need a GPU, real data, trained
models or a finished run.

Also kept: a result is written once, and without git; one home for results (every record in
bench/records/ has a date and its bench's own headline in the table, and every
``bench/...json`` the README and docs cite exists) and no import cycle in bench/ (none in the
import graph, and each module imports when it is imported first: none imports a retired one).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS = {"presets": "segmentation_models_pytorch"}  # bench -> its optional package ([bench])


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
    """The benches, as bench/__main__.py finds them (read at collection, without importing them:
    each has a ``main``)."""
    from bench.__main__ import benches

    return sorted(benches())


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
    assert "stages_pay" in out and "Does a second stage pay" in out
    assert "ablation_cpu" not in out and "fold0" not in out  # retired; a helper, not a bench


def test_a_result_is_never_overwritten(tmp_path):
    from bench.common import result_path, write_result

    out = write_result("x", {"n": 1, "command": "c"}, tmp_path / "x.json", quiet=True)
    assert read(out)["n"] == 1 and read(out)["command"] == "c"
    with pytest.raises(FileExistsError):
        write_result("x", {"n": 2}, out, quiet=True)
    (tmp_path / "x-2020-01-01.json").write_text("{}")
    assert result_path("x", tmp_path, "2020-01-01").name == "x-2020-01-01-2.json"


def test_a_result_is_written_without_git(tmp_path):
    """An image without git, or a folder that is no checkout, still gets its result file, with
    the commit "unknown" (git off PATH: a Python in an empty PATH, run by its full path)."""
    from bench.common import commit

    assert commit(tmp_path) == "unknown"
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", commit())
    out = tmp_path / "x.json"
    code = "import sys; from bench.common import write_result as w; w('x', {'n': 1}, sys.argv[1])"
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=REPO,
        env={"PATH": str(empty), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert read(out)["commit"] == "unknown" and read(out)["n"] == 1


def test_writing_a_record_appends_its_row(tmp_path, monkeypatch):
    """A record written into the records folder gets its row in the index, with the headline its
    bench states (else its first numbers); one written elsewhere gets none. ``table`` checks one
    row per record and one record per row, and ``--add`` indexes a record written elsewhere."""
    import bench.common
    from bench.table import check
    from bench.table import main as table

    records, index = tmp_path.resolve() / "records", tmp_path.resolve() / "README.md"
    records.mkdir()
    index.write_text("# Results\n\n| file | bench | date | commit | speed probe | headline |\n")
    monkeypatch.setattr(bench.common, "RECORDS", records)
    monkeypatch.setattr(bench.common, "INDEX", index)
    write, today = bench.common.write_result, __import__("time").strftime("%Y-%m-%d")
    commit = bench.common.commit()
    write("x", {"n": 1}, records / "x-1.json", headline="n is 1 | one", quiet=True)
    probe = {"of_cpu_speed_json": 0.5}
    write("y", {"threads": 2, "wall_seconds": 3.5, "n": 4}, records / "y.json", speed=probe)
    write("z", {"n": 2}, tmp_path / "z.json", headline="elsewhere", quiet=True)
    assert index.read_text().splitlines()[3:] == [
        f"| x-1.json | x | {today} | `{commit}` | not recorded | n is 1 \\| one |",
        f"| y.json | y | {today} | `{commit}` | 0.5 | wall_seconds=3.5, n=4 |",
    ]
    assert check(index) == []
    (records / "z.json").write_bytes((tmp_path / "z.json").read_bytes())  # from another machine
    x = (records / "x-1.json").read_bytes()
    (records / "x-1.json").unlink()
    assert check(index) == ["z.json: a record without a row", "x-1.json: a row without a record"]
    (records / "x-1.json").write_bytes(x)
    with pytest.raises(SystemExit, match="z.json: a record without a row"):
        table(["--index", str(index)])
    table(["--index", str(index), "--add", str(records / "z.json")])
    assert index.read_text().splitlines()[-1].endswith("| elsewhere |")
    assert check(index) == []
    with pytest.raises(ValueError, match="has its row already"):
        table(["--index", str(index), "--add", str(records / "z.json")])
    with pytest.raises(ValueError, match="expected a record in"):
        table(["--index", str(index), "--add", str(tmp_path / "z.json")])


def test_the_index_has_one_row_per_record_and_one_record_per_row():
    """bench/README.md: every record in bench/records/ has one row and every row one record;
    a record that states its headline has the row its bench wrote (no bench is registered
    anywhere, so a bench can be deleted and its rows stay)."""
    from bench.table import INDEX, RECORDS, check, indexed, row

    assert check() == [] and len(indexed()) >= 79 and not list((REPO / "bench").glob("*.json"))
    text = INDEX.read_text().splitlines()
    lines = {line.split("|")[1].strip(): line for line in text if line.startswith("|")}
    for name in indexed():
        cells = lines[name].split(" | ")
        assert len(cells) == 6 and re.fullmatch(r"\d{4}-\d{2}-\d{2}( \(git\))?", cells[2]), name
        record = json.loads((RECORDS / name).read_text())
        if "headline" in record:
            assert lines[name] == row(RECORDS / name, record)


@pytest.mark.parametrize("name", [n for n in names() if n != "table"])
def test_every_bench_states_its_headline_where_it_writes_its_record(name):
    calls = [
        node
        for node in ast.walk(ast.parse((REPO / "bench" / f"{name}.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "write_result"
    ]
    assert calls and all("headline" in {k.arg for k in call.keywords} for call in calls), name


def cited_results() -> list[str]:
    """Every ``bench/...json`` path the README and docs cite (not ``git show COMMIT:bench/...``,
    whose path is the one that commit had, nor patterns such as ``<bench>-DATE.json``)."""
    paths = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for path in re.findall(r"(?<![:\w/.-])bench/[\w./-]+\.json", doc.read_text()):
            if not re.search(r"[A-Z]{3,}", path):
                paths.add(path)
    return sorted(paths)


def test_every_cited_result_exists():
    cited = cited_results()
    assert "bench/records/quality-cpu.json" in cited and len(cited) > 30
    assert [p for p in cited if not (REPO / p).is_file()] == []


def bench_imports(path: Path) -> set[str]:
    """The bench modules ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "bench":
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")}
    return out


def test_bench_has_no_import_cycle():
    graph = {p.stem: bench_imports(p) for p in (REPO / "bench").glob("*.py")}
    assert "cpu_speed" not in graph["common"]  # the cycle there was: common <-> cpu_speed
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import cycle: " + " -> ".join([*path, name])
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_each_bench_module_imports_alone_first():
    """Each module imported first, in a fresh ``bench`` package (one Python for all of them)."""
    code = f"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "bench" or k.startswith("bench.")]:
        del sys.modules[key]
    try:
        importlib.import_module("bench." + name)
    except ModuleNotFoundError as err:
        if err.name not in {set(NEEDS.values())}:
            failed.append(f"{{name}}: {{err!r}}")
    except Exception as err:
        failed.append(f"{{name}}: {{err!r}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    modules = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__main__")
    done = subprocess.run(
        [sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_dag_records_the_speed_probe(tmp_path, monkeypatch):
    """The DAG itself is faked (the workflow tests run it): the probe before and after it lands
    in the result, and the wall time scaled to probe 1."""
    dag = bench("default_dag")
    probes = iter([{"of_cpu_speed_json": 0.4}, {"of_cpu_speed_json": 0.6}])
    monkeypatch.setattr(dag, "speed_probe", lambda: next(probes))

    real_run = dag.subprocess.run

    def snakemake(command, cwd=None, **kwargs):
        if command[0] != "snakemake":  # git, for the header's commit
            return real_run(command, cwd=cwd, **kwargs)
        results = Path(cwd) / "results"
        (results / "benchmarks" / "train").mkdir(parents=True)
        (results / "benchmarks" / "train" / "a.tsv").write_text("s\n1.5\n")
        (results / "summary.csv").write_text("name,stage,oof_tuned\nblend,blend,0.9\n")

    monkeypatch.setattr(dag.subprocess, "run", snakemake)
    run("default_dag", "--out", str(tmp_path / "d.json"))
    result = read(tmp_path / "d.json")
    assert result["speed_probe"] == {"of_cpu_speed_json": 0.4}
    assert result["speed_probe_after"] == {"of_cpu_speed_json": 0.6}
    assert result["wall_seconds_at_probe_1"] == round(result["wall_seconds"] * 0.5, 1)
    assert result["rule_seconds"] == {"train": 1.5}
    assert result["headline"].endswith(" s at probe 1); tuned OOF blend 0.900")


def test_startup(tmp_path):
    run("startup", "--only", "synth", "--repeats", "1", "--out", str(tmp_path / "s.json"))
    result = read(tmp_path / "s.json")
    seconds = result["subcommands"]["synth"]["import_seconds"]
    assert result["headline"] == f"import {seconds:g}-{seconds:g} s per subcommand"


def test_cpu_speed(tmp_path):
    """A plain setting and one of the `cpu` profile's own net, which the record names in full."""
    from bench.fold0 import cpu_net

    out = tmp_path / "c.json"
    tiny = ["--steps", "1", "--warmup", "1", "--tiles", "8", "--threads", "1"]
    run("cpu_speed", "--settings", "bs16,cpu_profile_bs16", *tiny, "--out", str(out))
    result = read(out)
    settings = result["settings"]
    rates = [s["train_images_per_s"] for s in settings.values()]
    assert result["headline"] == f"train img/s: bs16 {rates[0]:g}, cpu_profile_bs16 {rates[1]:g}"
    assert settings["bs16"]["train_images_per_s"] > 0
    assert settings["cpu_profile_bs16"]["model"] == cpu_net()["model"]
    assert settings["cpu_profile_bs16"]["model"]["pad_to"] == 128


def test_fold0_net_is_the_cpu_profiles():
    """One definition of the `cpu` net: the profile's; stages_pay trains it at 64 px, the net its
    record (stages_pay-2026-12-07.json) was trained with."""
    import yaml

    from bench.fold0 import cpu_net

    recipe = yaml.safe_load((REPO / "workflow/profiles/cpu/recipe.yaml").read_text())
    profile = recipe["models"]["cpu_unet"]
    net = cpu_net(resize_to=64)
    assert net["arch"] == profile["arch"] and net["augment"] == profile["augment"]
    assert net["model"] == {**profile["model"], "resize_to": 64}
    assert "phases" not in net and "slot_minutes" not in net
    assert bench("stages_pay").params(8, 0.003)["model"] == {
        "encoder_name": "resnet10t",
        "pretrained": "none",
        "decoder_channels": [64, 32, 16, 8, 8],
        "resize_to": 64,
        "pad_to": 64,
        "encoder_args": {"channels": [32, 64, 128, 256], "stem_width": 16},
        "deep_supervision": True,
        "attention": "scse",
        "hypercolumn": True,
        "hypercolumn_channels": 16,
    }


def test_fold0_split_and_score(data):
    """Fold 0 is a fifth of the tiles, disjoint from the train tiles; the score forces blank
    tiles empty and tunes the threshold (by hand: a faint salt tile is lost at 0.5 only)."""
    import numpy as np

    from bench.fold0 import score, split

    train, val, blank = split(str(data))
    assert len(train) + len(val) == 160 and not set(train.ids) & set(val.ids)
    assert len(val) == 32 and len(blank) == 32
    truth = np.zeros((3, 101, 101), np.uint8)
    truth[1, 20:60, 30:70] = 1  # tile 0 empty, tile 1 salt, tile 2 empty and blank
    probs = np.zeros((3, 101, 101), np.float32)
    probs[1] = truth[1] * 0.4  # found, but under 0.5
    probs[2] = 1.0  # all salt, but blank: forced empty
    scores = score(truth, np.array([False, False, True]), probs)
    assert scores["at_0.5"] == pytest.approx(2 / 3)  # tile 1 predicted empty: 0
    assert scores["tuned"] == pytest.approx(1.0) and scores["threshold"] < 0.5
    assert scores["tuned_min_area"] == pytest.approx(1.0)


def test_mosaic(tmp_path, data):
    out = tmp_path / "m.json"
    run("mosaic", "--data-dir", str(data), "--no-synthetic", "--out", str(out))
    result = read(out)
    assert result["n_tiles"] > 0 and result["headline"].startswith(f"{result['n_tiles']:,} tiles")


def test_gpu_step_eager_rows_on_cpu(tmp_path):
    """On a CPU only the eager rows run (graphs need CUDA): one net, one batch size."""
    out = tmp_path / "step.json"
    tiny = ["--nets", "unet34_pad128", "--batches", "2", "--warmup", "1", "--steps", "1"]
    run("gpu_step", "--device", "cpu", *tiny, "--out", str(out))
    (row,) = read(out)["rows"]
    assert row["batch"] == 2 and not row["cuda_graph"] and row["images_per_s"] > 0
