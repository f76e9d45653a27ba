"""``python -m bench``: the benches and one line on each; ``python -m bench NAME [ARGS]`` runs one.

A bench is a module of this package with a ``main(argv)``; its line is its docstring's first.
Run from the repository root (``python -m`` puts it on the path).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHES = {"__init__", "__main__", "common"}


def benches() -> dict[str, str]:
    """Each bench's name and the first line of its docstring, read without importing it."""
    out = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem in NOT_BENCHES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem] = " ".join(doc.split("\n\n")[0].split())
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    table = benches()
    if not argv or argv[0] in ("-h", "--help", "list"):
        width = max(map(len, table))
        print(__doc__.splitlines()[0].replace("``", ""))
        for name, line in table.items():
            print(f"  {name:<{width}}  {line}")
        return
    name, rest = argv[0].removesuffix(".py"), argv[1:]
    if name not in table:
        sys.exit(f"python -m bench: no bench {name!r}; one of: {', '.join(table)}")
    sys.argv = [f"bench/{name}.py", *rest]  # the command a result records
    importlib.import_module(f"bench.{name}").main(rest)


if __name__ == "__main__":
    main()
