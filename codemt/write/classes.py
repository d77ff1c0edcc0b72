"""Class docstrings: `codemt docstring --classes`.

A class without a docstring gets one: a summary written by the model from the class as
it reads a method (its name and bases as the signature; its statements, and its methods'
signatures, as the body), and, for the classes whose fields are declared in the class
body (dataclasses, attrs classes, NamedTuples), an Attributes section in the chosen style
listing each field with its type. The model was trained on methods: its class summaries
are weak (docs/docstring-upkeep.md measures them), so review them as you would a
colleague's first draft.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from codemt.source.docstrings import GOOGLE, NUMPY, REST
from codemt.source.extract import docstring_node
from codemt.write.apply import Paragraph, Source
from codemt.write.templates import Parameter

# Decorators that turn annotated class attributes into fields.
_FIELD_DECORATORS = frozenset(
    {"dataclass", "s", "attrs", "define", "frozen", "mutable", "dataclasses.dataclass"}
)
# Calls that declare an attrs field: `x = attr.ib()`, `x = attrs.field()`, `x = field()`.
_FIELD_CALLS = frozenset({"ib", "attrib", "field"})
# Bases whose annotated attributes are fields.
_FIELD_BASES = frozenset({"NamedTuple", "TypedDict"})
# The most lines of class body the model reads (its sources are short).
MAX_BODY_LINES = 40


@dataclass(frozen=True)
class Klass:
    """A class of a file: `index` among the file's classes in source order (what the
    editor counts), its qualified name, the line of its `class`, its AST node."""

    name: str
    index: int
    line: int
    node: ast.ClassDef
    docstring: str

    @property
    def public(self) -> bool:
        return not any(part.startswith("_") for part in self.name.split("."))


def classes_of(source: Source) -> list[Klass]:
    """Every class of a file, in source order, with its qualified name."""
    names: dict[int, str] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                names[id(child)] = f"{prefix}{child.name}"
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(child, f"{prefix}{child.name}.<locals>.")
            else:
                walk(child, prefix)

    walk(source.tree, "")
    nodes = [n for n in ast.walk(source.tree) if isinstance(n, ast.ClassDef)]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return [
        Klass(names[id(node)], index, node.lineno, node, ast.get_docstring(node) or "")
        for index, node in enumerate(nodes)
    ]


def _last(expression: ast.expr) -> str:
    """`dataclass` of `@dataclasses.dataclass(frozen=True)`."""
    if isinstance(expression, ast.Call):
        expression = expression.func
    return ast.unparse(expression).split(".")[-1]


def has_fields(node: ast.ClassDef) -> bool:
    """Whether the class declares fields in its body: a dataclass, an attrs class, a
    NamedTuple or TypedDict."""
    if any(_last(d) in _FIELD_DECORATORS for d in node.decorator_list):
        return True
    return any(_last(base) in _FIELD_BASES for base in node.bases)


def attributes_of(node: ast.ClassDef) -> list[Parameter]:
    """The fields a dataclass-like class declares, in order, with their types and
    defaults (none for another class)."""
    if not has_fields(node):
        return []
    found = []
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            annotation = ast.unparse(statement.annotation)
            if annotation.split("[")[0].split(".")[-1] in ("ClassVar", "InitVar"):
                continue
            default = _default(statement.value)
            found.append(Parameter(statement.target.id, annotation, default))
        elif (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Call)
            and _last(statement.value.func) in _FIELD_CALLS
        ):
            found.append(Parameter(statement.targets[0].id, _keyword(statement.value, "type")))
    return [p for p in found if not p.name.startswith("_")]


def _default(value: ast.expr | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, ast.Call) and _last(value.func) in _FIELD_CALLS:
        default = next((k.value for k in value.keywords if k.arg == "default"), None)
        return None if default is None else ast.unparse(default)
    return ast.unparse(value)


def _keyword(call: ast.Call, name: str) -> str:
    found = next((k.value for k in call.keywords if k.arg == name), None)
    return "" if found is None else ast.unparse(found)


def class_record(klass: Klass) -> dict[str, Any]:
    """The class as the model reads a method: `def Name(bases):` and its statements (its
    methods by their signatures), at most MAX_BODY_LINES lines."""
    node = klass.node
    body = node.body[1:] if docstring_node(node) is not None else node.body
    parts = []
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(f"def {statement.name}({ast.unparse(statement.args)}): ...")
        else:
            parts.append(ast.unparse(statement))
    lines = "\n".join(parts).splitlines()[:MAX_BODY_LINES] or ["pass"]
    bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
    return {
        "name": node.name,
        "signature": f"def {node.name}({bases}):",
        "body": "\n".join(f"    {line}" for line in lines),
        "decorators": [ast.unparse(d) for d in node.decorator_list],
        "class_name": "",
    }


def class_docstring(summary: str, attributes: list[Parameter], style: str) -> list[Paragraph]:
    """The summary, then (in a sectioned style) the fields with their types."""
    paragraphs = [Paragraph(summary)]
    if not attributes or style not in (GOOGLE, NUMPY, REST):
        return paragraphs
    paragraphs.append(Paragraph(""))
    if style == GOOGLE:
        paragraphs.append(Paragraph("Attributes:"))
        for a in attributes:
            name = f"{a.name} ({a.annotation}):" if a.annotation else f"{a.name}:"
            paragraphs.append(Paragraph(name, indent=4, hang=4))
    elif style == NUMPY:
        paragraphs += [Paragraph("Attributes"), Paragraph("-" * len("Attributes"))]
        for a in attributes:
            paragraphs.append(Paragraph(f"{a.name} : {a.annotation}" if a.annotation else a.name))
    else:
        for a in attributes:
            paragraphs.append(Paragraph(f":ivar {a.name}:", hang=4))
            if a.annotation:
                paragraphs.append(Paragraph(f":vartype {a.name}: {a.annotation}", hang=4))
    return paragraphs
