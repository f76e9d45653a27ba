"""docs/sections.md's examples, run as written: after a `snakemake submission` each uses the tuned
threshold the page promises, and none falls back to 0.5 with "no cv.json"."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import segyio
import yaml

from saltseg import layout
from saltseg.cli import _parser
from saltseg.data.synthetic import draw_section

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sections.md"
# segyio's own from_array2D passes Python lists to its C layer and warns about it
pytestmark = pytest.mark.filterwarnings("ignore:Implicit conversion:RuntimeWarning")


def doc_commands() -> list[list[str]]:
    """The ``saltseg`` and ``snakemake`` lines of the page's bash blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S)
    lines = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()]
    return [words for words in lines if words and words[0] in ("saltseg", "snakemake")]


def copy_workflow(repo: Path, workdir: Path) -> None:
    """The workflow and its own src/ (the commands run from there), with the default profile."""
    shutil.copy(repo / "Snakefile", workdir)
    for folder in ("workflow", "envs", "src"):
        shutil.copytree(repo / folder, workdir / folder)
    (workdir / "profiles").symlink_to("workflow/profiles")


def write_line(path: Path) -> None:
    """A 2-D SEG-Y line (202 traces of 101 samples) of a synthetic section."""
    image, _ = draw_section(np.random.default_rng(5), 1, 2)
    segyio.tools.from_array2D(str(path), ((image.astype(np.float32) - 128) / 40).T, dt=2000)


def run(workdir: Path, words: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(workdir / "src")}
    return subprocess.run(
        words, cwd=workdir, capture_output=True, text=True, env=env, timeout=900, check=False
    )


def test_the_docs_commands_are_accepted(repo, tmp_path):
    """Fast: every example parses (saltseg) or plans (snakemake -n) on the default config."""
    commands = doc_commands()
    assert [w[:2] for w in commands if w[0] == "saltseg"] == [["saltseg", "predict-section"]] * 2
    for words in commands:
        if words[0] == "saltseg":
            _parser().parse_args(words[1:])
    copy_workflow(repo, tmp_path)
    shutil.copy(repo / "config.yaml", tmp_path)
    (tmp_path / "line.sgy").touch()
    for words in commands:
        if words[0] == "snakemake":
            result = run(tmp_path, [*words, "-n"])
            assert result.returncode == 0, f"{shlex.join(words)}\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def submitted(repo, tmp_path_factory) -> Path:
    """A tiny one-stage workflow (two folds of a small U-Net, one epoch) run to `submission`."""
    workdir = tmp_path_factory.mktemp("sections_docs")
    copy_workflow(repo, workdir)
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["synthetic"].update(sections=2, rows=4, cols=5)
    config["folds"]["n_folds"] = 2
    config["runtime"]["threads"] = 2
    config["predict"]["tta"] = ["none"]
    config["stages"] = [1]
    model = config["models"][config["stage1"]["models"][0]]
    model["model"] = {**model["model"], "decoder_channels": [16, 16, 8, 8, 8]}
    model["phases"] = [{"loss": "bce_dice", "lr": 0.003, "epochs": 1, "batch_size": 8}]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = run(workdir, ["snakemake", "submission"])
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Snakemake's "Job stats" table: {rule: jobs}."""
    text = (result.stdout + result.stderr).split("Job stats:")[1]
    rows = re.findall(r"^(\w+)\s+(\d+)$", text.split("\n\n")[0], re.M)
    return {rule: int(n) for rule, n in rows if rule != "total"}


@pytest.mark.slow
def test_the_docs_examples_use_the_tuned_threshold_after_a_submission(submitted):
    stage1 = layout.stage_dir("stage1")
    assert not (submitted / layout.ensemble_file("stage1", layout.CV)).exists()  # the premise
    write_line(submitted / "line.sgy")
    expected = {  # --models -> the cv.json whose threshold the docs promise
        layout.blend_dir(): layout.blend_file(layout.CV),
        stage1: layout.ensemble_file("stage1", layout.CV),
    }
    outputs = {}
    for words in doc_commands():
        result = run(submitted, words)
        said = result.stdout + result.stderr
        assert result.returncode == 0, f"{shlex.join(words)}\n{said[-3000:]}"
        assert "no cv.json" not in said, shlex.join(words)
        if words[0] == "saltseg":
            models = words[words.index("--models") + 1]
            outputs[words[words.index("--out") + 1]] = expected[models]
        elif words[1] == "sections":  # the blend, as the submission
            outputs[layout.result("sections", "line")] = layout.blend_file(layout.CV)
            log = submitted / layout.log("predict_section", "line")
            assert "no cv.json" not in log.read_text()
        elif words[1] == "stage1":  # merges and tunes, trains nothing
            jobs = job_counts(result)
            assert "ensemble" in jobs and set(jobs) <= {"merge_folds", "ensemble", "stage1"}
    assert len(outputs) == 3
    for out, cv in outputs.items():
        params = json.loads((submitted / out / "params.json").read_text())
        tuned = json.loads((submitted / cv).read_text())["threshold_pixels"]
        assert (params["threshold"], params["threshold_source"]) == (tuned, cv), out
        mask = np.load(submitted / out / "mask.npy")
        prob = np.load(submitted / out / "probability.npy")
        np.testing.assert_array_equal(mask, prob > tuned)
