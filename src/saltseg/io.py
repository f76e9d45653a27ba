"""Atomic file output: every artifact is written to a temporary name, then renamed.

A killed job or a full disk therefore never leaves a half-written file under the final name, and the
previous good file (if any) survives until the new one is complete. A temporary that a killed job
left behind (``.<name>.XXXXXXXX<suffix>``) is never read, and is removed when the same output is
next written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saltseg.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the suffix, so writers that infer a format from it still work.
    On any exception the temporary file is removed and ``path`` is left untouched; a failed write
    (disk full, file size limit) is raised as :class:`WriteError`, one line naming ``path``.
    """
    path = Path(path)
    try:  # a read-only or missing-permission folder fails here, before anything is written
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as err:
        raise WriteError(path, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
        _remove_stale(path.parent, f".{path.stem}.", path.suffix)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch.save's C++ writer failing
        raise WriteError(path, err) from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class WriteError(OSError):
    """An output could not be written (disk full, file size limit, ...); the old file is kept.

    ``str(err)`` is one line naming the file, e.g. ``results/x.parquet: could not write (File too
    large); the previous version, if any, is unchanged``.
    """

    def __init__(self, path: Path, cause: BaseException) -> None:
        if isinstance(cause, WriteError):  # nested atomic writes: keep the innermost message
            super().__init__(cause.errno, cause.strerror)
            return
        code = getattr(cause, "errno", None)
        if isinstance(cause, OSError) and code:
            reason = os.strerror(code)
        else:  # torch.save reports a failed write as a RuntimeError without errno
            first = (str(cause).splitlines() or [type(cause).__name__])[0][:200]
            reason = f"{first}; disk full or over a file size limit?"
        super().__init__(
            code, f"{path}: could not write ({reason}); the previous version, if any, is unchanged"
        )

    def __str__(self) -> str:
        return self.strerror


#: the list of files that :func:`atomic_dir` leaves in every folder it writes (see there)
MANIFEST = ".saltseg-manifest"


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` when the block succeeds.

    A folder output never costs a user a file. The writer leaves a manifest, ``MANIFEST``, in
    the folder: one line per file it wrote (relative paths). An existing ``path`` is replaced
    only when everything in it is its own, that is when it is empty or every file in it is
    listed by its manifest (the step's earlier output). Otherwise, say ``--out mydata`` naming a
    folder that holds ``notes.txt``, or a file, the write is refused with :class:`InputError`, one
    line naming the folder and the first files that are not the step's, before the block runs
    and, for a file added meanwhile, again before the rename. A manifest is trusted, rather than
    comparing names with what the step writes now, because the step's files change with its
    options (fewer tiles, fewer slices) while a user's files never appear in it. A folder that a
    version before the manifest wrote is therefore refused once; Snakemake removes a rule's
    ``directory()`` output before it reruns the job, so the workflow never meets one.

    Replacing is as atomic as POSIX allows for a non-empty folder: the old folder is renamed to a
    temporary name, the new one renamed into place, then the old one removed; a job killed in
    between leaves the old folder under a temporary name that the next write removes.
    """
    path = Path(path)
    check_folder_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise WriteError(path, err) from err
    try:
        yield tmp
        try:
            _finish_dir(tmp, path)
        except OSError as err:
            raise WriteError(path, err) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _finish_dir(tmp: Path, path: Path) -> None:
    """Write ``tmp``'s manifest and move it to ``path`` (see :func:`atomic_dir`)."""
    header = "# saltseg wrote these files; a rerun of the same step may replace the folder\n"
    (tmp / MANIFEST).write_text(header + "".join(f"{name}\n" for name in sorted(_files(tmp))))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
    check_folder_output(path)  # a file the user put there while the step ran
    if path.exists():
        aside = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
        os.replace(path, aside)  # renaming onto an empty folder: the old output goes aside
    os.replace(tmp, path)
    _remove_stale(path.parent, f".{path.name}.", "")  # the old output among them


def _files(folder: Path) -> Iterator[str]:
    """The relative paths (posix) of every file, link or special file under ``folder``."""
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]  # not walked into
        for name in files + links:
            yield Path(root, name).relative_to(folder).as_posix()


def check_folder_output(path: str | Path) -> None:
    """Raise :class:`InputError` when ``path`` exists and holds anything :func:`atomic_dir` did not
    write there (see its docstring); an empty folder, or the step's own output, passes.

    :func:`atomic_dir` calls it; a step whose folder is not its first output calls it first too,
    so that a refused folder leaves the step's other outputs unwritten.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise InputError(
            path, "expected a folder to write, found a file or link; refusing to replace it"
        )
    try:
        manifest = path / MANIFEST
        lines = manifest.read_text().splitlines() if manifest.is_file() else []
        own = {line for line in lines if line and not line.startswith("#")}
        foreign = sorted(name for name in _files(path) if name != MANIFEST and name not in own)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"expected a folder this step may replace ({err})") from None
    if foreign:
        names = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise InputError(
            path,
            f"holds files this step did not write ({names}); refusing to replace the folder:"
            " choose another output folder, or move them away",
        )


def _remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Remove temporaries of one output that a killed writer left behind.

    Only names that ``mkstemp``/``mkdtemp`` made for this output (``prefix`` + 8 random characters
    + ``suffix``) are touched; an output has one writer at a time (one Snakemake job), so after
    its rename every other such name is a leftover.
    """
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
    for entry in folder.iterdir():
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):  # a leftover is worth no failed write
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (an output that is an input as it is)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def read_json(path: str | Path, keys: tuple[str, ...] = (), what: str = "") -> Any:
    """The JSON in ``path`` (a file a step wrote: cv.json, members.json, metrics.json, ...).

    With ``keys``, the JSON must be an object holding each of them. ``what`` describes the file in
    the message (default: a JSON file, or a JSON object with ``keys``).

    Raises:
        InputError: one line naming the file: missing, unreadable, not JSON, or a key missing.
    """
    what = what or (f"a JSON object with {', '.join(keys)}" if keys else "a JSON file")
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, f"expected {what}, found none") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise InputError(path, f"expected {what}, not readable as JSON ({reason})") from None
    if keys and not isinstance(obj, dict):
        raise InputError(path, f"expected {what}, got a JSON {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise InputError(path, f"expected {what}, {missing[0]!r} is missing")
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
