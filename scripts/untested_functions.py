"""The functions no test runs: read a coverage JSON report (`pytest --cov=codemt
--cov-report=json`) and list, per module, each function or method none of whose body lines
ran, with a count of them all.

    python scripts/untested_functions.py coverage.json
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function of a module with its qualified name, in source order."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((f"{prefix}{child.name}", child))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int]:
    """The lines of the function's statements, its docstring left out."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return {line for node in body for line in range(node.lineno, (node.end_lineno or 0) + 1)}


def untested(report: dict) -> dict[str, list[str]]:
    """Per source file of the report, the functions none of whose body lines ran."""
    found = {}
    for path, data in sorted(report["files"].items()):
        ran = set(data["executed_lines"])
        measured = ran | set(data["missing_lines"])
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        names = [
            name
            for name, function in functions(tree)
            if (lines := body_lines(function) & measured) and not lines & ran
        ]
        if names:
            found[path] = names
    return found


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    found = untested(report)
    total = sum(len(names) for names in found.values())
    print(f"functions no test runs: {total}")
    for path, names in found.items():
        print(f"  {path}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
