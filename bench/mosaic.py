"""Benchmark mosaic assembly: all real tiles (time, memory, mosaics) and synthetic quality.

Usage: ``python -m bench mosaic [--data-dir DIR] [--out FILE.json]
[--draw /tmp/mosaic_largest.png]``. The real data (Kaggle layout) is read only here, never in tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import write_result
from saltseg.data.images import read_image, read_mask
from saltseg.mosaic.assemble import AssemblyParams, assemble, is_blank
from saltseg.mosaic.draw import draw_mosaic

TILE = 101
SYNTH = {"seed": 0, "sections": 40, "rows": 8, "cols": 12, "blank_fraction": 0.03}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_tiles(data_dir: Path) -> tuple[list[str], np.ndarray]:
    """Ids and images of the train then the test tiles, read on a thread pool."""
    paths = sorted((data_dir / "train" / "images").glob("*.png"))
    paths += sorted((data_dir / "test" / "images").glob("*.png"))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda p: read_image(p, TILE), paths))
    return [p.stem for p in paths], np.stack(images)


def read_masks(data_dir: Path) -> dict[str, np.ndarray]:
    """Train masks by id, from ``train/masks`` (empty when the folder is absent)."""
    return {
        p.stem: read_mask(p, TILE) for p in sorted((data_dir / "train" / "masks").glob("*.png"))
    }


def mosaic_stats(tiles: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Counts describing a layout."""
    sizes = tiles.groupby("mosaic_id").size()
    return {
        "n_mosaics_size_ge_2": int((sizes >= 2).sum()),
        "tiles_in_mosaics_size_ge_2": int(sizes[sizes >= 2].sum()),
        "largest_mosaic": int(sizes.max()),
        "n_pairs": int(len(pairs)),
        "n_pairs_lr": int((pairs["kind"] == "lr").sum()),
        "n_pairs_tb": int((pairs["kind"] == "tb").sum()),
    }


def synthetic_quality(config: dict) -> dict:
    """Recall and wrong rate of the layout's neighbour pairs against ``mosaics.csv``.

    True pairs are the right/below neighbours of the generated layout between two non-blank
    tiles (a blank tile has no evidence and is never matched).
    """
    from saltseg.data.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        generate(out, **config)
        ids, images = read_tiles(out)
        truth = pd.read_csv(out / "mosaics.csv", dtype={"id": str})
    start = time.perf_counter()
    tiles, pairs = assemble(ids, images)
    seconds = time.perf_counter() - start
    blank = {i for i, b in zip(ids, is_blank(images)) if b}
    at = {(m, x, y): i for i, m, x, y in truth[["id", "mosaic_id", "x", "y"]].itertuples(False)}
    true = set()
    for (m, x, y), i in at.items():
        for kind, (dx, dy) in (("lr", (1, 0)), ("tb", (0, 1))):
            j = at.get((m, x + dx, y + dy))
            if j is not None and i not in blank and j not in blank:
                true.add((i, j, kind))
    found = set(zip(pairs["id_a"], pairs["id_b"], pairs["kind"]))
    return {
        "config": config,
        "n_tiles": len(ids),
        "n_blank": len(blank),
        "true_pairs": len(true),
        "found_pairs": len(found),
        "recall": len(found & true) / max(len(true), 1),
        "wrong_rate": len(found - true) / max(len(found), 1),
        "assemble_seconds": round(seconds, 2),
    }


def versions() -> dict:
    """Python and library versions."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "pandas", "scikit-learn", "opencv-python-headless"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the JSON, return its content."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/tgs"))
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    parser.add_argument("--draw", type=Path, help="also draw the largest real mosaic (PNG)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic check")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]  # other work on the machine slows the timings

    start = time.perf_counter()
    ids, images = read_tiles(args.data_dir)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tiles, pairs = assemble(ids, images)
    assemble_seconds = time.perf_counter() - start
    result = {
        "data_dir": str(args.data_dir),
        "n_tiles": len(ids),
        "n_blank": int(is_blank(images).sum()),
        "seconds": {"load": round(load_seconds, 2), "assemble": round(assemble_seconds, 2)},
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **mosaic_stats(tiles, pairs),
        "params": AssemblyParams().__dict__,
        "load_average_1m_at_start": round(load_at_start, 2),
        "versions": versions(),
    }
    if args.draw:
        by_id = dict(zip(ids, images))
        draw_mosaic(tiles[tiles["mosaic_id"] == 0], by_id, read_masks(args.data_dir), args.draw)
    if not args.no_synthetic:
        try:
            result["synthetic"] = synthetic_quality(SYNTH)
        except ImportError as err:
            result["synthetic"] = {"skipped": str(err)}
    result["peak_rss_mib_with_synthetic"] = round(peak_rss_mib(), 1)
    headline = (
        f"{result['n_tiles']:,} tiles assembled in {result['seconds']['assemble']:g} s "
        f"(+{result['seconds']['load']:g} s load); {result['n_mosaics_size_ge_2']} mosaics of 2+"
    )
    write_result("mosaic", result, args.out, quiet=True, headline=headline)
    return result


if __name__ == "__main__":
    report = main()
    print({k: v for k, v in report.items() if k not in ("params", "versions")}, file=sys.stderr)
