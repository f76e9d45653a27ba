"""The fingerprint of the data files a rule reads, kept as a Snakemake ``params`` value.

Snakemake sees a folder input change only when an entry is added or removed, so a data file
edited in place would rerun nothing. Each rule therefore also keeps, as a param, the fingerprint
of the data files its step reads: their names, sizes and content hashes, hashed. A file edited
in place, added or removed changes it, and the params rerun trigger reruns the jobs that read
that file and what follows from them. File times are no part of it, so a tree copied by a tool
that rounds them (tar, zip, rsync to a coarser filesystem) or sets them anew keeps it.

Reading every file each time would cost seconds per Snakemake process on the real data, so each
file's content hash is kept in a cache file (:class:`ContentHashes`) under the file's size,
modification time, change time and inode: an unchanged file costs one ``stat``. The change time
(``st_ctime``) is set by the kernel on every write and cannot be set back, so an edit that keeps
the size and the modification time (``touch -r``) is still seen; a copied or unpacked tree has
new change times and is read once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from saltseg.io import atomic_path

#: what the steps read of each side of a Kaggle-layout folder (paths relative to it)
TRAIN = ("train.csv", "depths.csv", "train/images", "train/masks")
TEST = ("sample_submission.csv", "depths.csv", "test/images")
TEST_IDS = ("sample_submission.csv",)  # the test ids alone (a training slot's budget)
TRUTH = ("solution.csv",)  # the test truth: read by scoring (summary) only
FOLD_TABLES = ("train.csv", "depths.csv")  # what a depth-stratified fold split reads

CACHE_FORMAT = 1  # the cache file's "format"; a file of another format is ignored and replaced
# A hash is kept only for a file whose change time is this much older than its reading, so that
# an edit in the same clock tick as the reading (ctime is coarse) can never hide behind it.
SETTLED_NS = 2_000_000_000

# folder -> ((device, inode, mtime), (PNG count, hash)): one scan per folder and snakemake
# process, redone when an entry is added or removed (that changes the folder's mtime). A file
# edited in place while a run is under way is seen by the next snakemake call, which reruns the
# jobs whose recorded fingerprint no longer matches.
_FOLDERS: dict[str, tuple[tuple[int, int, int], tuple[int, str]]] = {}
_CACHES: dict[str | None, ContentHashes] = {}  # cache file -> its hashes, loaded once a process


def fingerprint(data_dir: str | Path, parts: Iterable[str], cache: str | Path | None = None) -> str:
    """``"<n> data files (<parts>) <hash>"`` of ``parts`` of ``data_dir`` (paths relative to
    it): files, and folders whose ``*.png`` each count; a part that is missing counts as absent.
    ``cache``: the content-hash cache file (None: kept in this process only).
    """
    data_dir, parts = Path(data_dir), sorted(set(parts))
    key = None if cache is None else os.path.abspath(cache)
    hashes = _CACHES.get(key)
    if hashes is None:
        hashes = _CACHES[key] = ContentHashes(key)
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
            n, folder_digest = _folder(path, info, hashes)
            digest.update(f"{part}/\t{n}\t{folder_digest}\n".encode())
            count += n
        else:
            content = hashes.of(os.path.abspath(path.parent), path.name, info)
            digest.update(f"{part}\t{info.st_size}\t{content}\n".encode())
            count += 1
    hashes.save()
    return f"{count} data files ({', '.join(parts)}) {digest.hexdigest()}"


def reset() -> None:
    """Forget the folders scanned and the caches loaded, as a new snakemake process starts."""
    _FOLDERS.clear()
    _CACHES.clear()


def _folder(folder: Path, info: os.stat_result, hashes: ContentHashes) -> tuple[int, str]:
    """How many ``*.png`` ``folder`` holds, and the hash of their names, sizes and contents."""
    key = str(folder)
    stamp = (info.st_dev, info.st_ino, info.st_mtime_ns)
    cached = _FOLDERS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    entries, absolute = [], os.path.abspath(folder)
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.name.endswith(".png") and not entry.name.startswith("."):
                found = entry.stat()
                content = hashes.of(absolute, entry.name, found)
                entries.append(f"{entry.name}\t{found.st_size}\t{content}\n")
    entries.sort()
    digest = hashlib.blake2b("".join(entries).encode(), digest_size=8).hexdigest()
    _FOLDERS[key] = (stamp, (len(entries), digest))
    return len(entries), digest


class ContentHashes:
    """Each file's content hash, kept under its (size, mtime_ns, ctime_ns, inode) in a JSON
    file at ``path`` (None: in memory only), shared by every snakemake process of a workdir.

    The file is ``{"format": 1, "folders": {absolute folder: {name: [size, mtime_ns,
    ctime_ns, inode, hash]}}}``. It is read whole and written whole, to a temporary name then
    renamed, so a reader never sees half a file. Writers merge their new hashes into what is on
    disk under an exclusive ``lockf`` lock on ``<path>.lock`` (POSIX locks also hold on NFS), so
    concurrent processes (SLURM jobs) lose none. A cache that cannot be read is taken as empty,
    and one that cannot be written is left alone: either costs time, never a wrong hash.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.known = _read(path)
        self.new: dict[str, dict[str, list]] = {}  # hashed here, not saved yet

    def of(self, folder: str, name: str, info: os.stat_result) -> str:
        """The content hash of the file ``name`` in the absolute ``folder``, whose ``stat`` is
        ``info``."""
        key = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        entry = self.known.get(folder, {}).get(name)
        if entry is not None and entry[:4] == key:
            return entry[4]
        content = hashlib.blake2b(digest_size=16)
        with open(os.path.join(folder, name), "rb") as handle:
            while chunk := handle.read(1 << 20):
                content.update(chunk)
        found = content.hexdigest()
        if info.st_ctime_ns < time.time_ns() - SETTLED_NS:
            self.known.setdefault(folder, {})[name] = [*key, found]
            self.new.setdefault(folder, {})[name] = [*key, found]
        return found

    def save(self) -> None:
        """Merge the new hashes into the cache file, dropping folders that no longer exist."""
        if self.path is None or not self.new:
            return
        with contextlib.suppress(OSError):  # read-only or full: the next process reads again
            with _locked(f"{self.path}.lock"):
                merged = _read(self.path)
                for folder, names in self.new.items():
                    merged.setdefault(folder, {}).update(names)
                merged = {name: files for name, files in merged.items() if os.path.isdir(name)}
                with atomic_path(self.path) as tmp:
                    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "folders": merged}))
                self.known = merged
        self.new = {}


def _read(path: str | None) -> dict[str, dict[str, list]]:
    """The cache file's folders, or none when it is absent, unreadable or of another format."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            cache = json.load(handle)
        folders = cache["folders"] if cache.get("format") == CACHE_FORMAT else {}
    except (OSError, ValueError, AttributeError, KeyError):
        return {}
    return folders if isinstance(folders, dict) else {}


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) for the block, where one can be had."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        # released when the file is closed; where the filesystem has no locks, writers go on
        # unlocked: a reader still sees whole files, a concurrent update may be lost
        with contextlib.suppress(OSError):
            fcntl.lockf(handle, fcntl.LOCK_EX)
        yield
