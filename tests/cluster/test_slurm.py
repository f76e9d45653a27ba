"""The unchanged DAG on a real SLURM cluster through snakemake-executor-plugin-slurm.

Skipped unless ``sinfo`` answers with a node that takes jobs (start one on this machine with
``tests/cluster/start-slurm.sh``) and the plugin is installed (``pip install -e ".[cluster]"``).
Run it with ``pytest tests/cluster -m slurm``. With ``SALTSEG_SLURM_BENCH=DIR`` it also writes
``DIR/slurm.json`` (versions, jobs, sacct states, wall time, machine) and ``DIR/slurm_run.log``.

The working directory must be on a filesystem that every node shares (true on a one-node
cluster); set ``SALTSEG_SLURM_TMP`` to a shared directory to run it on a multi-node cluster.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pytest
from test_workflow import write_config  # the tiny config of the local end-to-end test

from saltseg import rle

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = "workflow/profiles/slurm"
MEM_MB = 16000  # the largest memory request of the profile's rules in this DAG (rule train)


def _run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _cluster() -> tuple[str | None, dict]:
    """``(reason to skip or None, {"gpus": bool, "mem_mb": int}`` of the cluster's nodes)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo, sbatch) on PATH", {}
    try:
        nodes = _run("sinfo", "-h", "-N", "-o", "%T|%m|%G")
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s", {}
    if nodes.returncode != 0:
        return f"sinfo failed: {nodes.stderr.strip()[:200]}", {}
    rows = [line.split("|") for line in nodes.stdout.split()]
    usable = [r for r in rows if r[0].rstrip("*~#$@") in ("idle", "mixed", "allocated")]
    if not usable:
        return f"no SLURM node takes jobs: {nodes.stdout.strip()[:200]!r}", {}
    try:
        version("snakemake-executor-plugin-slurm")
    except PackageNotFoundError:
        return 'snakemake-executor-plugin-slurm is not installed (pip install -e ".[cluster]")', {}
    return None, {
        "gpus": any("gpu" in r[2] for r in usable),
        "mem_mb": max(int(re.sub(r"\D", "", r[1]) or 0) for r in usable),
    }


SKIP, CLUSTER = _cluster()


def _versions() -> dict:
    out = {}
    for package in ["snakemake", "snakemake-executor-plugin-slurm", "torch", "saltseg"]:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    out["slurm"] = _run("sinfo", "-V").stdout.strip()
    return out


def _machine() -> dict:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(pages * page_size / 2**30, 1),
        "python": platform.python_version(),
    }


def _copy_workflow(repo: Path, workdir: Path) -> None:
    """The workflow as tests/test_workflow.py copies it, with its tiny config."""
    shutil.copy(repo / "Snakefile", workdir)
    for name in ["workflow", "envs", "src"]:
        shutil.copytree(repo / name, workdir / name)
    (workdir / "profiles").symlink_to("workflow/profiles")
    write_config(workdir, repo)


@pytest.fixture(scope="module")
def slurm_run(repo):
    """The default target run once through sbatch in a fresh copy of the workflow."""
    if SKIP:
        pytest.skip(SKIP)
    if CLUSTER["mem_mb"] < MEM_MB:
        pytest.skip(f"the profile asks for {MEM_MB} MB, the largest node has {CLUSTER['mem_mb']}")
    shared_tmp = os.environ.get("SALTSEG_SLURM_TMP")
    workdir = Path(tempfile.mkdtemp(prefix="saltseg-slurm-", dir=shared_tmp))
    _copy_workflow(repo, workdir)
    # a CPU-only cluster has no GRES gpu: the profile then asks for no GPU (documented switch)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # Snakemake itself imports saltseg (config validation): take it from the copy, as the jobs do
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir / "src"), env.get("PYTHONPATH")]))
    env.setdefault("SALTSEG_SLURM_GPUS", "1" if CLUSTER["gpus"] else "0")
    command = [
        "snakemake",
        "--workflow-profile",
        PROFILE,
        "--slurm-init-seconds-before-status-checks",
        "5",  # tiny jobs: look after 5 s instead of the default 40 s
    ]
    start = time.perf_counter()
    result = subprocess.run(  # one stream, in the order Snakemake wrote it
        command,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=3600,
    )
    wall = time.perf_counter() - start
    yield {"workdir": workdir, "result": result, "wall_s": wall, "command": command, "env": env}
    shutil.rmtree(workdir, ignore_errors=True)


def _slurm_jobs(workdir: Path) -> dict[str, str]:
    """``{slurm job id: rule}`` from the executor's kept per-job logs."""
    logs = workdir / ".snakemake/slurm_logs"
    return {p.stem: p.relative_to(logs).parts[0].removeprefix("rule_") for p in logs.rglob("*.log")}


def _sacct(job_ids) -> pd.DataFrame:
    """One row per job allocation: JobID, JobName, State, ExitCode, Elapsed, rule (from Comment)."""
    out = _run(
        "sacct",
        "-X",
        "-P",
        "-n",
        "-j",
        ",".join(job_ids),
        "-o",
        "JobID,State,ExitCode,Elapsed,AllocCPUS,ReqMem,AllocTRES,Comment",
    ).stdout
    columns = ["JobID", "State", "ExitCode", "Elapsed", "AllocCPUS", "ReqMem", "AllocTRES", "rule"]
    rows = [line.split("|") for line in out.splitlines() if line]
    table = pd.DataFrame(rows, columns=columns)
    table["rule"] = table["rule"].str.extract(r"^rule_(.+?)(?:_wildcards_.*)?$", expand=False)
    return table


def test_the_dag_runs_through_sbatch_to_a_valid_submission(slurm_run):
    workdir, result = slurm_run["workdir"], slurm_run["result"]
    assert result.returncode == 0, result.stdout[-5000:]
    data = workdir / "results/data/synthetic"
    sample = pd.read_csv(data / "sample_submission.csv")
    sub = pd.read_csv(workdir / "results/submission.csv", keep_default_na=False)
    assert sub.columns.tolist() == ["id", "rle_mask"]
    assert sub["id"].tolist() == sample["id"].tolist()
    assert all(rle.decode(code, (101, 101)).shape == (101, 101) for code in sub["rle_mask"])

    # every torch job went through sbatch (one kept SLURM log per job, sacct knows them all);
    # the cheap ones are localrules and ran where snakemake runs
    log = result.stdout
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    jobs = _slurm_jobs(workdir)
    assert sorted(submitted) == sorted(jobs) and len(set(submitted)) == len(submitted)
    assert set(jobs.values()) == {"train", "predict"}
    assert "localrule all" in log and "localrule submission" in log
    sacct = _sacct(jobs)
    assert sorted(sacct["JobID"]) == sorted(jobs)
    assert (sacct["State"] == "COMPLETED").all(), sacct.to_string()
    assert (sacct["ExitCode"] == "0:0").all(), sacct.to_string()
    assert dict(zip(sacct["JobID"], sacct["rule"])) == jobs
    train = sacct[sacct["rule"] == "train"]
    threads = int(yaml_config(workdir)["runtime"]["threads"])
    assert (train["AllocCPUS"].astype(int) == threads).all()  # cpus_per_task = threads
    assert train["AllocTRES"].str.contains("gres/gpu").all() == CLUSTER["gpus"]

    bench = os.environ.get("SALTSEG_SLURM_BENCH")
    if bench:
        _write_bench(Path(bench), slurm_run, jobs, sacct)


def yaml_config(workdir: Path) -> dict:
    import yaml

    return yaml.safe_load((workdir / "config.yaml").read_text())


def _write_bench(out: Path, run: dict, jobs: dict[str, str], sacct: pd.DataFrame) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = run["result"].stdout.splitlines()
    if len(lines) > 3000:  # keep the start and the end of a huge log
        lines = [*lines[:1500], f"... {len(lines) - 3000} lines left out ...", *lines[-1500:]]
    header = f"$ SALTSEG_SLURM_GPUS={run['env']['SALTSEG_SLURM_GPUS']} {' '.join(run['command'])}"
    (out / "slurm_run.log").write_text("\n".join([header, *lines]) + "\n")
    config = yaml_config(run["workdir"])
    result = {
        "what": "default target of the tiny test config through sbatch "
        "(tests/cluster/test_slurm.py, profile workflow/profiles/slurm)",
        "date": time.strftime("%Y-%m-%d"),
        "versions": _versions(),
        "cluster": {
            "nodes": _run("sinfo", "-h", "-N", "-o", "%N %c CPUs %m MB %G").stdout.split("\n")[0],
            "gpus": CLUSTER["gpus"],
            "status_command": "sacct",
        },
        "config": {
            "n_folds": config["folds"]["n_folds"],
            "models": {k: v for k, v in config.items() if k.startswith("stage")},
            "threads": config["runtime"]["threads"],
        },
        "jobs_submitted": len(jobs),
        "jobs_per_rule": sacct["rule"].value_counts().sort_index().to_dict(),
        "sacct_states": sacct["State"].value_counts().to_dict(),
        "sacct_elapsed_s_per_rule": (
            sacct.assign(seconds=sacct["Elapsed"].map(_seconds))
            .groupby("rule")["seconds"]
            .sum()
            .to_dict()
        ),
        "wall_s": round(run["wall_s"], 1),
        "machine": _machine(),
    }
    (out / "slurm.json").write_text(json.dumps(result, indent=2) + "\n")


def _seconds(elapsed: str) -> int:
    """SLURM's ``[D-]HH:MM:SS`` in seconds."""
    days, _, clock = elapsed.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s
