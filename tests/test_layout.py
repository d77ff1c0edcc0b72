"""The package's shape: every command answers --help, argparse stays in `codemt.cli`, and no
module imports, directly or through others, a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from codemt.cli import COMMANDS, build_parser, main

PACKAGE = Path(__file__).resolve().parents[1] / "codemt"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imported(path: Path) -> set[str]:
    """The codemt modules a file imports, at its top or inside functions, leaving out what
    only type checkers read (`if TYPE_CHECKING:`)."""

    def owner(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            else:
                names = []
            found.update(m for m in map(owner, names) if m)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _sub_commands() -> list[str]:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    return sorted(choices)


def test_every_command_module_registers_a_command():
    assert len(_sub_commands()) >= len(COMMANDS)
    assert all(name.startswith("codemt.cli.") for name in COMMANDS)


@pytest.mark.parametrize("command", _sub_commands())
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"codemt {command}" in capsys.readouterr().out


def test_library_modules_know_nothing_of_argparse():
    speaking = [
        name
        for name, path in MODULES.items()
        if not name.startswith("codemt.cli") and "argparse" in _imported_names(path)
    ]
    assert speaking == []


def _imported_names(path: Path) -> set[str]:
    """The top-level packages a file imports, and "argparse" where it builds a parser
    (`add_argument`, `add_parser`) whatever it imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Attribute) and node.attr in PARSER_CALLS:
            names.add("argparse")
    return names


PARSER_CALLS = {"add_argument", "add_parser", "add_subparsers", "add_argument_group"}


def test_no_import_cycle():
    graph = {name: _imported(path) - {name} for name, path in MODULES.items()}
    # A module and its own package's __init__ are one floor: `codemt.serve` importing
    # nothing of its children, a child may import its package.
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append(path[path.index(other) :] + [other])
            elif other not in state:
                walk(other, path + [other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_the_graph_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from codemt.model import PRESETS\n"
        "def f():\n    from codemt.write import apply\n    import codemt.corpus\n"
    )
    assert _imported(module) == {"codemt.write", "codemt.write.apply", "codemt.corpus"}


# What each package may not import: the data flows from reading source, through mining and
# training, to the model's users; nothing below reaches up, and only `cli` speaks argparse.
NOT_IMPORTED_BY = {
    "codemt.source": ("mine", "write", "serve", "training", "recipe", "cli", "translate"),
    "codemt.mine": ("write", "serve", "training", "recipe", "cli", "translate", "memory"),
    "codemt.training": ("write", "serve", "recipe", "cli", "mine"),
    "codemt.write": ("mine", "serve", "training", "recipe", "cli"),
    "codemt.serve": ("mine", "training", "recipe", "cli"),
    "codemt.recipe": ("serve", "cli"),
}


@pytest.mark.parametrize("package", sorted(NOT_IMPORTED_BY))
def test_the_data_flows_one_way(package):
    forbidden = tuple(f"codemt.{name}" for name in NOT_IMPORTED_BY[package])
    reaching_up = sorted(
        f"{name} -> {other}"
        for name, path in MODULES.items()
        if name == package or name.startswith(package + ".")
        for other in _imported(path)
        if other in forbidden or other.startswith(tuple(f + "." for f in forbidden))
    )
    assert reaching_up == []
