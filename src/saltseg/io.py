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


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` when the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise WriteError(path, err) from err
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _remove_stale(path.parent, f".{path.name}.", "")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


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


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
