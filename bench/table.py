"""Check bench/README.md, the records index: one row per record in bench/records/.

Usage: python -m bench table [--add RECORD ...]

The index appends itself: ``bench.common.write_result`` appends a record's row as it writes the
record into bench/records/, and rows are never edited (those of the records made before this
index stay as the generator of commit 6362cd7 wrote them). A row holds the file, bench, date,
commit, speed probe and headline: the line the bench states beside the code that writes the
record (``write_result(..., headline=...)``, kept in the record), else the record's first three
numbers. With no arguments this checks one row per record and one record per row; ``--add``
first appends the rows of records written elsewhere (on a GPU machine, say) and copied into
bench/records/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RECORDS = BENCH / "records"  # not results/: .gitignore ignores every results/
INDEX = BENCH / "README.md"
SETTINGS = {"threads", "seed", "repeats", "steps", "stride", "n_tiles", "n_train", "n_val"}


def numbers(record: dict, n: int = 3) -> str:
    """The first ``n`` top-level numbers of ``record`` that are not settings, as ``key=value``."""
    out = [
        f"{key}={value:g}"
        for key, value in record.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in SETTINGS
    ]
    return ", ".join(out[:n]) or "-"


def row(path: Path, record: dict) -> str:
    """The index row of ``record``, the JSON object at ``path``."""
    speed = record.get("speed_probe")
    ratio = speed.get("of_cpu_speed_json") if isinstance(speed, dict) else None
    cells = [
        path.name,
        record.get("bench") or path.stem,
        record.get("date") or "-",
        f"`{record['commit']}`" if record.get("commit") else "-",
        f"{ratio:g}" if isinstance(ratio, int | float) else "not recorded",
        record.get("headline") or numbers(record),
    ]
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def indexed(index: Path = INDEX) -> list[str]:
    """The record file of each row of ``index``, in order (a file twice: two rows)."""
    lines = index.read_text().splitlines()
    cells = [line.split("|")[1].strip() for line in lines if line.startswith("|")]
    return [cell for cell in cells if cell.endswith(".json")]


def append(path: Path, index: Path = INDEX) -> str:
    """Append the row of the record at ``path`` (in the folder beside ``index``) to ``index``,
    atomically; return it. Refuses a record elsewhere, or one that has a row already."""
    path = Path(path)
    if path.resolve().parent != (index.resolve().parent / "records"):
        raise ValueError(f"{path}: expected a record in {index.parent / 'records'}")
    if path.name in indexed(index):
        raise ValueError(f"{path}: {index} has its row already")
    line = row(path, json.loads(path.read_text()))
    text = index.read_text()
    tmp = index.with_name(f".{index.name}.tmp")
    tmp.write_text(text + ("" if text.endswith("\n") else "\n") + line + "\n")
    tmp.replace(index)
    return line


def check(index: Path = INDEX) -> list[str]:
    """What breaks one row per record and one record per row, one line each."""
    rows = indexed(index)
    records = sorted(p.name for p in (index.parent / "records").glob("*.json"))
    return (
        [f"{name}: a record without a row" for name in records if name not in rows]
        + [f"{name}: a row without a record" for name in sorted(set(rows) - set(records))]
        + [f"{name}: {n} rows" for name, n in Counter(rows).items() if n > 1]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add", nargs="*", default=[], metavar="RECORD", help="append its row")
    parser.add_argument("--index", default=str(INDEX), help="records in the records/ beside it")
    args = parser.parse_args(argv)
    index = Path(args.index)
    for path in args.add:
        print(append(Path(path), index))
    problems = check(index)
    if problems:
        sys.exit(f"{index}:\n" + "\n".join(problems))
    print(f"{index}: one row per record, {len(indexed(index))} records")


if __name__ == "__main__":
    main()
