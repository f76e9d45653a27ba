"""bench/gpu_check.sh, the prepared check for a GPU machine, tested here for what a CPU can show:
its set-up under a virtual environment's python, the packages the machine's image lacks, its
size guard, the DAG overrides it runs with, what it collects of the DAG run (checked by hand on
a hand-made results folder) and the record it gathers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from saltseg.config import validate_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"


@pytest.fixture(scope="module")
def gpu_check():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))  # bench/ is a package at the repository root
        import bench.gpu_check

        yield bench.gpu_check


def carried_wheel(folder: Path, name: str) -> None:
    """A one-module pure-Python wheel, as the pack step carries them."""
    folder.mkdir()
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_set_up_under_a_venv_python_imports_through_the_wrapper(tmp_path):
    """The rules call ``python``: a symlink to a venv's python from outside the venv starts the
    base interpreter without the venv's packages (issue 44's third fault); the wrapper keeps
    the venv, and a carried wheel imports through it."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True)  # torch and friends from this machine
    python = env_dir / "bin" / "python3"
    work, wheels = tmp_path / "work", tmp_path / "wheels"
    carried_wheel(wheels, "gpu_check_probe")
    environ = {
        **os.environ,
        "PYTHON": str(python),
        "GPU_CHECK_WORK": str(work),
        "GPU_CHECK_WHEELS": str(wheels),
    }
    environ.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", str(SCRIPT), "setup"], capture_output=True, text=True, env=environ, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"(prefix {env_dir})" in done.stdout
    assert f"saltseg {REPO / 'src' / 'saltseg' / '__init__.py'}" in done.stdout
    wrapper = work / "bin" / "python"
    assert not wrapper.is_symlink()
    environ = {**environ, "PYTHONPATH": str(work / "site")}  # as the check's steps see it
    seen = subprocess.run(
        [str(wrapper), "-c", "import sys, torch, gpu_check_probe; print(sys.prefix)"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert seen.stdout.strip() == str(env_dir), seen.stderr


DEVICE_IMAGE = r"""
import importlib.metadata as md, json, pkgutil, re, runpy, sys
from pathlib import Path

repo = Path(sys.argv[1])


def names(path):
    lines = (line.split("#")[0].strip() for line in Path(path).read_text().splitlines())
    return {re.sub(r"[-_.]+", "-", re.split(r"[=<>\[ ]", s)[0]).lower() for s in lines if s}


allowed = names(repo / "bench/gpu_image_packages.txt") | names(repo / "bench/gpu_check_wheels.txt")
owners = md.packages_distributions()
refused = set()


class DeviceImage:
    # Only what the machine's image and the carried wheels hold can be imported.
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in ("saltseg", "bench") or top not in owners:
            return None
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners[top]}
        if dists & allowed:
            return None
        refused.add(min(dists))
        raise ModuleNotFoundError(f"No module named {name!r} there", name=name)


sys.meta_path.insert(0, DeviceImage())
import saltseg

for info in pkgutil.walk_packages(saltseg.__path__, "saltseg."):
    if not info.name.endswith("__main__"):
        __import__(info.name)
exits = []
for argv in (["--version"], ["-n", "--cores", "1", "submission"]):
    sys.argv = ["snakemake", *argv]
    try:
        runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
    except SystemExit as end:
        exits.append(end.code or 0)
print(json.dumps({"exits": exits, "refused": sorted(refused)}))
"""


def test_the_wheels_hold_what_snakemake_and_saltseg_import_beyond_the_device_image(tmp_path):
    """Run ``snakemake --version`` and a dry run of the DAG, and import every saltseg module,
    with only the GPU image's packages and the carried wheels importable. snakemake 9.27 imports
    sqlalchemy and sqlmodel at start (issue 44's fourth fault); what snakemake only tries
    (pulp, the ILP solver) may stay behind."""
    sys.path.insert(0, str(REPO))
    try:
        from bench.common import copy_workflow
    finally:
        sys.path.remove(str(REPO))
    copy_workflow(tmp_path)
    script = tmp_path / "device_image.py"
    script.write_text(DEVICE_IMAGE)
    done = subprocess.run(
        [sys.executable, str(script), str(REPO)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["exits"] == [0, 0], done.stderr[-3000:]
    assert "pulp" in seen["refused"]  # the check is live: an absent package is refused


@pytest.mark.parametrize("size_mib, ok", [(20, True), (64, False)])
def test_the_size_guard_counts_the_tree_and_the_pack(tmp_path, size_mib, ok):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "gpu_check.sh").write_text(SCRIPT.read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "tracked.bin").write_bytes(b"\0" * 2**20)  # 1 MiB of tree
    (tmp_path / ".gitignore").write_text(".gpu/\n")
    (tmp_path / ".gpu").mkdir()
    with open(tmp_path / ".gpu" / "tgs.tar", "wb") as pack:
        pack.truncate(size_mib * 2**20)
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "guard"], cwd=tmp_path, capture_output=True, text=True
    )
    assert (done.returncode == 0) == ok
    if ok:
        assert f"come to {size_mib + 1} MiB (at most 60)" in done.stdout
    else:
        assert f"come to {size_mib + 1} MiB, over 60" in done.stderr
        assert "pack fewer test tiles" in done.stderr


def test_the_dag_overrides_cut_every_phase_and_keep_a_valid_config(gpu_check):
    overrides = gpu_check.dag_overrides(epochs=1)
    config = gpu_check.profile_config()
    names = gpu_check.stage_model_names(config)
    assert names == ["fast_unet34", "fast_unet34_pretrain", "fast_pad128_mix"]
    for name in names:
        phases = overrides["models"][name]["phases"]
        recipe = config["models"][name]["phases"]
        assert [p["epochs"] for p in phases] == [1] * len(recipe)
        assert [p["loss"] for p in phases] == [p["loss"] for p in recipe]
        assert [p.get("data", "train") for p in phases] == [p.get("data", "train") for p in recipe]
        assert overrides["models"][name]["model"] == {"pretrained": "none"}
    merged = gpu_check._merged(config, yaml.safe_load(yaml.safe_dump(overrides)))
    assert merged["models"]["fast_unet34"]["model"]["encoder_name"] == "resnet34"  # kept
    validate_config(merged, REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_the_report_gathers_each_steps_files(tmp_path, gpu_check):
    logs = tmp_path
    steps = [{"step": "env", "rc": 0, "limit_s": 30, "seconds": 3.2}]
    steps.append({"step": "dag", "rc": 124, "limit_s": 190, "seconds": 190.4})
    (logs / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (logs / "env.json").write_text(json.dumps({"torch": "2.11.0", "cuda": "13.0"}))
    (logs / "tests.xml").write_text(
        '<testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="0">'
        '<testcase classname="tests.test_graphed" name="test_a"/>'
        '<testcase classname="tests.test_graphed" name="test_b"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_gpus" name="test_c"/></testsuite></testsuites>'
    )
    record = gpu_check.report(logs)
    assert record["steps"] == steps
    assert record["env"] == {"torch": "2.11.0", "cuda": "13.0"}
    assert record["fold0"] is None and record["dag"] is None  # a step that wrote nothing
    assert record["tests"] == {
        "tests": 3,
        "failures": 1,
        "errors": 0,
        "skipped": 0,
        "failed": ["tests.test_graphed::test_b"],
    }
    assert gpu_check.headline(record) == "1/2 steps passed (failed: dag)"
    epochs = [{"images_per_s": 100.0}, {"images_per_s": 200.0}]
    faster = [{"images_per_s": 150.0}, {"images_per_s": 450.0}]
    record["fold0"] = {
        "runs": {"cuda_graphs_false": {"epochs": epochs}, "cuda_graphs_true": {"epochs": faster}},
        "agreement": {"within": True},
    }
    record["dag"] = {"reached": {"submission": True, "summary": False}}
    assert gpu_check.headline(record) == (
        "1/2 steps passed (failed: dag); fold 0 graphs x2.00 img/s, losses within noise; "
        "fast DAG reached submission"
    )


def benchmark(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")


def test_wall_time_grows_with_the_test_tiles_each_rule_reads(tmp_path, gpu_check):
    bench = tmp_path / "benchmarks"
    benchmark(bench / "predict" / "stage1_m_fold0.tsv", 30.0)
    benchmark(bench / "predict" / "stage1_m_fold1.tsv", 40.0)  # the slowest fold counts
    benchmark(bench / "merge_folds" / "stage1_m.tsv", 5.0)
    benchmark(bench / "mosaic" / "mosaic.tsv", 10.0)
    benchmark(bench / "train" / "stage1_m_fold0.tsv", 100.0)  # training: no test tiles
    # 3,400 train tiles in 5 folds (680 OOF), 4,000 of the 18,600 test tiles:
    # predict 40 * ((18600 + 680) / (4000 + 680) - 1) = 124.786, merge 5 * (18600 / 4000 - 1)
    # = 18.25, mosaic 10 * ((3400 + 18600) / (3400 + 4000) - 1) = 19.730
    wall = gpu_check.extrapolated_wall(tmp_path, 300.0, 3400, 4000, 680)
    assert wall == pytest.approx(300 + 124.786 + 18.25 + 19.730, abs=0.1)
    assert gpu_check.extrapolated_wall(tmp_path, 300.0, 3400, 0, 680) is None


def test_busy_share_and_train_speed(tmp_path, gpu_check):
    samples = tmp_path / "samples.csv"
    samples.write_text("t, 20, 1000\nt, 80, 3000\nt, 90, 2000\nt, [N/A], 10\n")
    busy = gpu_check.busy_share(samples)
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
    assert gpu_check.train_speed(tmp_path) == {
        "stage1/m": {"per_fold": {"fold0": 110, "fold1": 50}, "sum": 160}
    }
