"""A finished run moved or copied whole plans nothing; its data fingerprints follow contents.

Each case copies the finished tiny run of tests/test_data_reruns.py (workflow, data, results and
.snakemake/) with one tool and asks ``snakemake -n`` in the copy. Most tools keep file times
only to some precision (GNU tar's default format and zip to the second, FAT to two seconds);
since the fingerprint holds no times, only Snakemake's own mtime trigger looks at them, and it
reruns a job only when an input is newer than its output, which rounding never makes so. A
plain ``cp -r`` gives every file a new time in copy order, so the mtime trigger reruns the
jobs whose large or folder inputs came after their outputs; ``snakemake --touch``
(docs/troubleshooting.md) tells Snakemake the files are current.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_data_reruns import NOTHING, dry_run, kaggle_run  # noqa: F401  (a fixture)
from test_workflow import planned_jobs, snakemake

pytestmark = pytest.mark.slow  # a finished run and a dry run per copy: about 30 s in all


def round_times(folder: Path, step_ns: int) -> None:
    """Set every time under ``folder`` (files, folders, links) to the nearest ``step_ns``."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in [*files, *dirs]:
            path = os.path.join(root, name)
            mtime = os.lstat(path).st_mtime_ns
            rounded = (mtime + step_ns // 2) // step_ns * step_ns
            os.utime(path, ns=(rounded, rounded), follow_symlinks=False)


def shell(command: str, cwd: Path) -> None:
    subprocess.run(command, shell=True, cwd=cwd, check=True, capture_output=True)


def tar(src: Path, dst: Path) -> None:
    shell(f"tar -cf - . | tar -xf - -C {dst}", src)  # GNU tar's default format: whole seconds


def cp_a(src: Path, dst: Path) -> None:
    shell(f"cp -a . {dst}", src)  # times kept to the nanosecond; new inodes and change times


def rsync_like(src: Path, dst: Path) -> None:
    """rsync -a onto a filesystem that keeps microseconds (SMB, NFSv3, FUSE mounts)."""
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    round_times(dst, 1000)


def zip_unzip(src: Path, dst: Path) -> None:
    if not (shutil.which("zip") and shutil.which("unzip")):
        pytest.skip("zip and unzip are not installed")
    shell(f"zip -qry {dst}/../run.zip .", src)
    shell(f"unzip -q ../run.zip -d {dst}", dst)  # times to the second (two without extra fields)


def two_seconds(src: Path, dst: Path) -> None:
    """A copy onto FAT/exFAT: times to two seconds."""
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    round_times(dst, 2 * 10**9)


def moved(workdir: Path, tmp_path: Path, copy: Callable[[Path, Path], None]) -> Path:
    copied = tmp_path / "moved"
    copied.mkdir()
    copy(workdir, copied)
    return copied


@pytest.mark.parametrize("copy", [tar, cp_a, rsync_like, zip_unzip, two_seconds])
def test_a_moved_finished_run_plans_nothing(kaggle_run, tmp_path, copy):  # noqa: F811
    workdir, _ = kaggle_run
    copied = moved(workdir, tmp_path, copy)
    image = next((workdir / "data" / "test" / "images").glob("*.png"))
    times = [path.stat().st_mtime_ns for path in (image, copied / image.relative_to(workdir))]
    assert (times[0] == times[1]) == (copy is cp_a)  # every other tool changed the times
    assert NOTHING in dry_run(copied).stdout


def test_a_plain_cp_r_reruns_by_mtime_until_touch_marks_it_current(kaggle_run, tmp_path):  # noqa: F811
    """All times new, in copy order: a job reruns when an input of 1 MB or more, or a folder,
    was copied after its outputs (smaller inputs Snakemake compares by checksum). Here the data
    folder, an input of most jobs, is copied last: they rerun for ``Updated input files``, not
    for their data fingerprint; ``snakemake --touch submission`` as documented makes
    ``snakemake -n submission`` plan nothing."""
    workdir, _ = kaggle_run
    copied = tmp_path / "moved"
    copied.mkdir()
    names = [path.name for path in workdir.iterdir() if path.name != "data"]
    shell(f"cp -r {' '.join(names)} {copied} && cp -r data {copied}", workdir)
    before = snakemake(copied, "-n", "submission")
    assert before.returncode == 0, before.stderr[-2000:]
    assert planned_jobs(before)["folds"] == 1 and "Params have changed" not in before.stdout
    assert "reason: Updated input files: data" in before.stdout
    touched = snakemake(copied, "--touch", "submission")
    assert touched.returncode == 0, touched.stderr[-2000:]
    assert NOTHING in snakemake(copied, "-n", "submission").stdout
