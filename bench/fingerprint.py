"""Seconds of the data fingerprint on a Kaggle-layout folder, cold and warm (fingerprint.json).

Usage: python -m bench fingerprint --data-dir DATA [--repeats 3]

What a snakemake process spends on the rules' ``data_files`` params (saltseg.data.fingerprint)
when it starts: the fingerprints of the train side, the test side and both, from a fresh
process's state, with the content-hash cache in a temporary folder. Each repeat times, in order:

- ``cold_disk``: no cache, and the files' pages dropped from the OS page cache
  (``posix_fadvise(DONTNEED)``): every file read from the disk, as after a move;
- ``cold``: no cache, the files in the page cache: every file read and hashed again;
- ``warm``: the cache that ``cold`` wrote: one ``stat`` per file and the cache file read, what an
  unchanged tree costs every snakemake process, each cluster job's included;
- ``stat_only``: ``os.stat`` of every file alone, the floor (the fingerprint before issue 48
  hashed names, sizes and times: about this).

The medians are kept, with the speed probe taken first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import speed_probe, write_result
from saltseg.data import fingerprint as fingerprints
from saltseg.data.fingerprint import TEST, TRAIN

SIDES = {"train": TRAIN, "test": TEST, "both": TRAIN + TEST}
KINDS = ("cold_disk", "cold", "warm", "stat_only")


def data_files(data: Path) -> list[Path]:
    """Every file the sides read: the tables, and the PNGs of the image and mask folders."""
    files = []
    for part in sorted(set(TRAIN + TEST)):
        path = data / part
        if path.is_dir():
            files += sorted(p for p in path.glob("*.png") if not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
    return files


def drop_pages(files: list[Path]) -> None:
    """Drop the files' pages from the OS page cache, so that the next read comes from disk."""
    for path in files:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(handle)


def fingerprint_all(data: Path, cache: Path) -> tuple[float, dict[str, str]]:
    """Seconds for every side's fingerprint in a fresh process's state, and the fingerprints."""
    fingerprints.reset()
    start = time.perf_counter()
    found = {name: fingerprints.fingerprint(data, side, cache) for name, side in SIDES.items()}
    return time.perf_counter() - start, found


def measure(data: Path, repeats: int) -> dict:
    """Each kind's median seconds (see the module's docstring) over ``repeats``."""
    files = data_files(data)
    runs: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "data_fingerprints.json"
        for _ in range(repeats):
            cache.unlink(missing_ok=True)
            drop_pages(files)
            seconds, cold = fingerprint_all(data, cache)
            runs["cold_disk"].append(seconds)
            cache.unlink(missing_ok=True)
            runs["cold"].append(fingerprint_all(data, cache)[0])
            seconds, warm = fingerprint_all(data, cache)
            runs["warm"].append(seconds)
            if warm != cold:
                raise RuntimeError(f"cached fingerprints differ: {cold} against {warm}")
            start = time.perf_counter()
            for path in files:
                os.stat(path)
            runs["stat_only"].append(time.perf_counter() - start)
        cache_bytes = cache.stat().st_size if cache.exists() else 0
    fingerprints.reset()
    return {
        "files": len(files),
        "pngs": sum(path.suffix == ".png" for path in files),
        "megabytes": round(sum(path.stat().st_size for path in files) / 1e6, 1),
        "cache_bytes": cache_bytes,
        "fingerprints": cold,
        "seconds": {kind: round(statistics.median(values), 3) for kind, values in runs.items()},
        "runs": {kind: [round(value, 3) for value in values] for kind, values in runs.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a folder in Kaggle layout")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    probe = speed_probe()
    result = measure(Path(args.data_dir), args.repeats)
    seconds = result["seconds"]
    write_result(
        "fingerprint",
        {"repeats": args.repeats, **result},
        args.out,
        speed=probe,
        headline=(
            f"{result['pngs']} PNGs, {result['megabytes']:g} MB: cold {seconds['cold_disk']:.1f} s"
            f" from disk, {seconds['cold']:.1f} s from page cache; warm {seconds['warm']:.2f} s"
            f" (stat alone {seconds['stat_only']:.2f} s)"
        ),
    )


if __name__ == "__main__":
    main()
