"""The fingerprint of the data files a rule reads, kept as a Snakemake ``params`` value.

Snakemake sees a folder input change only when an entry is added or removed, so a data file
edited in place would rerun nothing. Each rule therefore also keeps, as a param, the fingerprint
of the data files its step reads: their names, sizes and modification times (one ``stat`` each,
no contents read), hashed. A file edited in place, added or removed changes it, and the params
rerun trigger reruns the jobs that read that file and what follows from them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: what the steps read of each side of a Kaggle-layout folder (paths relative to it)
TRAIN = ("train.csv", "depths.csv", "train/images", "train/masks")
TEST = ("sample_submission.csv", "depths.csv", "test/images")
TEST_IDS = ("sample_submission.csv",)  # the test ids alone (a training slot's budget)
TRUTH = ("solution.csv",)  # the test truth: read by scoring (summary) only
FOLD_TABLES = ("train.csv", "depths.csv")  # what a depth-stratified fold split reads

# folder -> ((device, inode, mtime), (PNG count, hash)): one scan per folder and snakemake
# process, redone when an entry is added or removed (that changes the folder's mtime). A file
# edited in place while a run is under way is seen by the next snakemake call, which reruns the
# jobs whose recorded fingerprint no longer matches.
_FOLDERS: dict[str, tuple[tuple[int, int, int], tuple[int, str]]] = {}


def fingerprint(data_dir: str | Path, parts: Iterable[str]) -> str:
    """``"<n> data files (<parts>) <hash>"`` of ``parts`` of ``data_dir`` (paths relative to
    it): files, and folders whose ``*.png`` each count; a part that is missing counts as absent.
    """
    data_dir, parts = Path(data_dir), sorted(set(parts))
    digest = hashlib.blake2b(digest_size=8)
    count = 0
    for part in parts:
        path = data_dir / part
        try:
            info = path.stat()
        except FileNotFoundError:
            digest.update(f"{part}\tabsent\n".encode())
            continue
        if stat.S_ISDIR(info.st_mode):
            n, folder_digest = _folder(path, info)
            digest.update(f"{part}/\t{n}\t{folder_digest}\n".encode())
            count += n
        else:
            digest.update(f"{part}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
            count += 1
    return f"{count} data files ({', '.join(parts)}) {digest.hexdigest()}"


def _folder(folder: Path, info: os.stat_result) -> tuple[int, str]:
    """How many ``*.png`` ``folder`` holds, and the hash of their names, sizes and mtimes."""
    key = str(folder)
    stamp = (info.st_dev, info.st_ino, info.st_mtime_ns)
    cached = _FOLDERS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    entries = []
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.name.endswith(".png") and not entry.name.startswith("."):
                found = entry.stat()
                entries.append(f"{entry.name}\t{found.st_size}\t{found.st_mtime_ns}\n")
    entries.sort()
    digest = hashlib.blake2b("".join(entries).encode(), digest_size=8).hexdigest()
    _FOLDERS[key] = (stamp, (len(entries), digest))
    return len(entries), digest
