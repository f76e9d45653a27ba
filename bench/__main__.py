"""``python -m bench``: the benches and one line on each; ``python -m bench NAME [ARGS]`` runs one.

A bench is a module of this package with a ``main(argv)`` (the others are its helpers); its line
is its docstring's first. Run from the repository root (``python -m`` puts it on the path).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benches() -> dict[str, str]:
    """Each bench's name and the first line of its docstring, read without importing it."""
    out = {}
    for path in sorted(HERE.glob("*.py")):
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        if path.stem != "__main__" and mains:
            doc = ast.get_docstring(tree) or ""
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
