"""The data fingerprint's content hashes and their cache file (saltseg.data.fingerprint).

A file's part of the fingerprint is its name, size and content hash; the hash is kept in the
cache under the file's size, modification time, change time and inode. A hit is shown by a
hash planted in the cache file being used; a miss by the file being read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saltseg.data import fingerprint as fingerprints

PARTS = ("train.csv", "train/images")


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A tiny Kaggle-layout folder; hashes of files written just now are kept too."""
    monkeypatch.setattr(fingerprints, "SETTLED_NS", 0)
    data = tmp_path / "data"
    (data / "train" / "images").mkdir(parents=True)
    (data / "train.csv").write_text("id,rle_mask\na,1 2\nb,\n")
    for name in ("a", "b"):
        (data / "train" / "images" / f"{name}.png").write_bytes(name.encode() * 100)
    return data


def fresh(data: Path, cache: Path | None) -> str:
    """The fingerprint as a new snakemake process computes it."""
    fingerprints.reset()
    return fingerprints.fingerprint(data, PARTS, cache)


def entries(cache: Path) -> dict:
    return json.loads(cache.read_text())["folders"]


def test_hashes_are_of_contents_and_cached_under_size_times_and_inode(data, tmp_path):
    cache = tmp_path / "results" / "fingerprints.json"
    first = fresh(data, cache)
    assert first.startswith("3 data files (train.csv, train/images) ")
    csv = data / "train.csv"
    stat = csv.stat()
    assert entries(cache)[str(data)]["train.csv"] == [
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
        stat.st_ino,
        hashlib.blake2b(csv.read_bytes(), digest_size=16).hexdigest(),
    ]
    assert set(entries(cache)[str(data / "train" / "images")]) == {"a.png", "b.png"}
    # a hit: a hash planted under the file's own key is used, the file is not read
    planted = json.loads(cache.read_text())
    planted["folders"][str(data)]["train.csv"][4] = "0" * 32
    cache.write_text(json.dumps(planted))
    assert fresh(data, cache) != first
    # a miss: a new modification time alone reads the file again, and the contents decide
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    assert fresh(data, cache) == first
    assert fresh(data, None) == first  # the same without a cache file
    # touch -r: same size, same modification time, other contents; the change time tells
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-p", str(csv), str(reference)], check=True)
    csv.write_text(csv.read_text().replace("1 2", "1 3"))
    subprocess.run(["touch", "-r", str(reference), str(csv)], check=True)
    after = csv.stat()
    assert (after.st_size, after.st_mtime_ns) == (
        reference.stat().st_size,
        stat.st_mtime_ns - 10**9,
    )
    edited = fresh(data, cache)
    assert edited != first
    csv.write_text(csv.read_text().replace("1 3", "1 2"))  # put back: the first fingerprint
    assert fresh(data, cache) == first


def test_a_file_changed_less_than_two_seconds_ago_is_hashed_but_not_kept(
    data, tmp_path, monkeypatch
):
    """ctime is coarse: an edit in the same clock tick as the hashing could keep the key."""
    cache = tmp_path / "fingerprints.json"
    monkeypatch.setattr(fingerprints, "SETTLED_NS", 2_000_000_000)
    assert fresh(data, cache) == fresh(data, None) and not cache.exists()
    monkeypatch.setattr(fingerprints, "SETTLED_NS", 0)
    fresh(data, cache)
    assert set(entries(cache)[str(data / "train" / "images")]) == {"a.png", "b.png"}


def test_a_bad_or_unwritable_cache_costs_time_not_the_fingerprint(data, tmp_path):
    cache = tmp_path / "fingerprints.json"
    first = fresh(data, None)
    for text in ("{not json", '{"format": 0, "folders": {}}', '{"format": 1, "folders": []}'):
        cache.write_text(text)
        assert fresh(data, cache) == first
        assert entries(cache)  # replaced by a good one
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    assert fresh(data, blocked / "fingerprints.json") == first  # its folder cannot be made


WRITER = """
import os, sys
from pathlib import Path
from saltseg.data import fingerprint as f
f.SETTLED_NS = 0
data, cache = Path(sys.argv[1]), sys.argv[2]
for i in range(int(sys.argv[3])):
    os.utime(data / "x.png", ns=(0, i))  # a new key: a miss, so every round writes the cache
    f.reset()
    f.fingerprint(data, ["."], cache)
"""


def test_concurrent_processes_share_one_cache_never_corrupt_and_lose_nothing(tmp_path):
    """Four processes (say SLURM jobs) each write the cache 15 times, while it is read back."""
    cache = tmp_path / "results" / "fingerprints.json"
    folders = []
    for k in range(4):
        folder = tmp_path / f"data{k}"
        folder.mkdir()
        for name in ("x", "y", "z"):
            (folder / f"{name}.png").write_bytes(f"{k}{name}".encode())
        folders.append(folder)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(cache), "15"])
        for folder in folders
    ]
    reads = 0
    while any(writer.poll() is None for writer in writers):
        if cache.exists():
            json.loads(cache.read_text())  # always whole: written under another name, renamed
            reads += 1
        time.sleep(0.005)
    assert [writer.returncode for writer in writers] == [0] * 4 and reads > 0
    kept = entries(cache)
    for folder in folders:
        stats = {p.name: p.stat() for p in folder.glob("*.png")}
        assert {name: value[:4] for name, value in kept[str(folder)].items()} == {
            name: [s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino] for name, s in stats.items()
        }
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name, f"{cache.name}.lock"]


def test_the_bench_times_cold_and_warm_fingerprints_that_agree(data, repo, monkeypatch):
    """bench/fingerprint.py on a tiny folder (its main adds the speed probe and the record)."""
    monkeypatch.syspath_prepend(str(repo))  # bench/ is a package at the repository root
    from bench.fingerprint import KINDS, SIDES, measure

    result = measure(data, repeats=2)
    assert (result["files"], result["pngs"], result["cache_bytes"] > 0) == (3, 2, True)
    fingerprints.reset()
    assert result["fingerprints"] == {
        name: fingerprints.fingerprint(data, side) for name, side in SIDES.items()
    }
    assert set(result["seconds"]) == set(KINDS)
    assert all(len(values) == 2 for values in result["runs"].values())
