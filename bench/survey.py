"""A labelled survey: tiling throughput and peak memory, and the salt volume's IoU (survey.json).

Usage: python -m bench survey [--tiling-mb 1024] [--skip-volume]

- ``tiling``: a ``.npy`` survey of about ``--tiling-mb`` MB of float32 amplitudes (inlines of
  one synthetic 303 x 404 section, rolled a trace further each) and an ``int8`` label volume with
  every third inline interpreted, tiled by ``saltseg survey-tiles`` in a child process: seconds,
  samples and MB per second, and the child's peak memory, polled every 0.1 s from
  ``/proc/<pid>/status``: ``RssAnon`` (its own memory) and ``RssFile`` (pages of the
  memory-mapped input it has read, which the OS drops first when memory runs short).
- ``volume``: ``snakemake volume`` with the default recipe on the synthetic survey
  (``saltseg survey-synth`` defaults: 24 inlines, every third interpreted) in a fresh copy of the
  workflow, without keeping the labels; pixel IoU and the competition metric (over the 101 x 101
  tiles of each slice, reflection-padded as the tiling pads) on the uninterpreted inlines,
  against ``truth.sgy``, which no step reads; the grouped OOF of the blend beside them.

One run (one seed): a difference of a few tiles is noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import copy_workflow, rule_seconds, speed_probe, write_result


def tiling(work: Path, megabytes: int) -> dict:
    """Tile a synthetic ``.npy`` survey of about ``megabytes`` MB in a child process."""
    from saltseg.data.synthetic import draw_section

    image, mask = draw_section(np.random.default_rng(0), 3, 4)
    amp = (image.T.astype(np.float32) - 128) / 40  # (crosslines 404, samples 303)
    inlines = max(3, megabytes * 2**20 // amp.nbytes)
    seismic = np.lib.format.open_memmap(work / "s.npy", "w+", np.float32, (inlines, *amp.shape))
    labels = np.lib.format.open_memmap(work / "l.npy", "w+", np.int8, seismic.shape)
    for k in range(inlines):
        seismic[k] = np.roll(amp, k, axis=0)
        labels[k] = np.roll(mask.T, k, axis=0) if k % 3 == 0 else -1
    seismic.flush()
    labels.flush()
    del seismic, labels
    command = [sys.executable, "-m", "saltseg", "survey-tiles", "--seismic", str(work / "s.npy")]
    command += ["--labels", str(work / "l.npy"), "--out", str(work / "tiles")]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    peak = {"RssAnon": 0, "RssFile": 0}
    while child.poll() is None:
        peak = {key: max(value, _status_kb(child.pid, key)) for key, value in peak.items()}
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"survey-tiles failed ({child.returncode})")
    info = json.loads((work / "tiles" / "survey.json").read_text())
    samples = inlines * amp.size
    return {
        "shape": [int(inlines), *amp.shape],
        "survey_mb": round(samples * 4 / 2**20, 1),
        "tiles": info["tiles"],
        "seconds": round(seconds, 1),
        "samples_per_s": round(samples / seconds),
        "mb_per_s": round(samples * 4 / 2**20 / seconds, 1),
        "peak_anon_mb": round(peak["RssAnon"] / 1024, 1),
        "peak_file_mb": round(peak["RssFile"] / 1024, 1),
    }


def _status_kb(pid: int, key: str) -> int:
    """``key`` (kB) of ``/proc/<pid>/status``; 0 once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(f"{key}:")), 0)


def volume(work: Path) -> dict:
    """``snakemake volume`` on the synthetic survey; IoU and metric on uninterpreted inlines."""
    import segyio

    from saltseg.metrics import competition_metric
    from saltseg.survey.synthetic import generate_survey
    from saltseg.survey.tiling import cut_tiles, pad_to_tiles

    copy_workflow(work)
    generate_survey(work / "own")
    (work / "own.yaml").write_text(
        "survey:\n  seismic: own/seismic.sgy\n  labels: own/labels.sgy\n"
    )
    start = time.perf_counter()
    run = subprocess.run(
        ["snakemake", "volume", "--cores", "2", "--configfile", "own.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    truth = segyio.tools.cube(str(work / "own" / "truth.sgy")) > 0
    labels = segyio.tools.cube(str(work / "own" / "labels.sgy"))
    mask = segyio.tools.cube(str(work / "results" / "volume" / "mask.sgy")) > 0
    free = (labels < 0).reshape(len(labels), -1).all(axis=1)  # uninterpreted inlines
    t, m = truth[free], mask[free]
    tiles = [
        np.concatenate(
            [
                cut_tiles(pad_to_tiles(a[k].T.astype(np.uint8), 101), 101).reshape(-1, 101, 101)
                for k in range(len(a))
            ]
        )
        for a in (t, m)
    ]
    cv = json.loads((work / "results" / "blend" / "cv.json").read_text())
    return {
        "uninterpreted_inlines": int(free.sum()),
        "pixel_iou": round(float((t & m).sum() / (t | m).sum()), 4),
        "competition_metric": round(competition_metric(*tiles), 4),
        "tiles_scored": len(tiles[0]),
        "blend_oof_grouped": cv,
        "seconds": round(seconds, 1),
        "rule_seconds": rule_seconds(work / "results" / "benchmarks"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench survey", description=__doc__)
    parser.add_argument("--tiling-mb", type=int, default=1024)
    parser.add_argument("--skip-volume", action="store_true")
    args = parser.parse_args(argv)
    speed = speed_probe()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t").mkdir()
        result = {"tiling": tiling(Path(tmp) / "t", args.tiling_mb)}
    if not args.skip_volume:
        with tempfile.TemporaryDirectory() as tmp:
            result["volume"] = volume(Path(tmp))
    t = result["tiling"]
    headline = (
        f"tiling {t['survey_mb']:.0f} MB: {t['mb_per_s']} MB/s, own memory at most"
        f" {t['peak_anon_mb']:.0f} MB (+{t['peak_file_mb']:.0f} MB of mapped input pages)"
    )
    if "volume" in result:
        v = result["volume"]
        headline += (
            f"; synthetic survey, uninterpreted inlines: IoU {v['pixel_iou']},"
            f" metric {v['competition_metric']} (one run)"
        )
    write_result("survey", result, speed=speed, headline=headline)


if __name__ == "__main__":
    main()
