"""`codemt docstring --classes`: class docstrings, with the fields of dataclass-like classes."""

import ast
import textwrap

import pytest

from codemt.write.apply import read_source
from codemt.write.classes import attributes_of, class_docstring, class_record, classes_of
from codemt.write.docstring import DocstringSettings, document

SOURCE = '''from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import attr


@dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)
    count: ClassVar[int] = 0
    _cache: dict = field(default_factory=dict)

    def norm(self) -> float:
        """The norm."""
        return (self.x ** 2 + self.y ** 2) ** 0.5


class Pair(NamedTuple):
    left: int
    right: int


@attr.s
class Account:
    owner = attr.ib(type=str)
    balance = attr.ib(default=0)


class Plain: pass


def factory():
    class Inner:
        """Has one."""

    class _Hidden:
        value: int = 1

    return Inner, _Hidden
'''


class Summaries:
    """A model that writes "Summary of NAME." for whatever it is given."""

    def translate_batch(self, records, target, style=None, **options):
        from codemt.generation import Translation

        return [Translation(f"Summary of {r['name']}.", -1.0) for r in records]


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(SOURCE)
    return read_source(path)


def test_classes_are_found_in_source_order_with_qualified_names(source):
    found = [(k.name, k.index, k.line, bool(k.docstring)) for k in classes_of(source)]
    assert found == [
        ("Point", 0, 8, False),
        ("Pair", 1, 20, False),
        ("Account", 2, 26, False),
        ("Plain", 3, 31, False),
        ("factory.<locals>.Inner", 4, 35, True),
        ("factory.<locals>._Hidden", 5, 38, False),
    ]


def test_the_fields_of_dataclasses_attrs_classes_and_named_tuples(source):
    fields = {
        k.name: [(a.name, a.annotation) for a in attributes_of(k.node)] for k in classes_of(source)
    }
    assert fields["Point"] == [("x", "float"), ("y", "float"), ("tags", "list[str]")]
    assert fields["Pair"] == [("left", "int"), ("right", "int")]
    assert fields["Account"] == [("owner", "str"), ("balance", "")]
    assert fields["Plain"] == []  # no fields declared: no Attributes


def test_the_model_reads_a_class_as_a_method(source):
    record = class_record(classes_of(source)[0])
    assert record["signature"] == "def Point():"
    assert "def norm(self): ..." in record["body"] and "x: float" in record["body"]
    assert record["decorators"] == ["dataclass(frozen=True)"]


@pytest.mark.parametrize(
    "style, lines",
    [
        ("google", ["Attributes:", "x (float):", "y:"]),
        ("numpy", ["Attributes", "----------", "x : float", "y"]),
        ("rest", [":ivar x:", ":vartype x: float", ":ivar y:"]),
        ("summary", []),
    ],
)
def test_an_attributes_section_in_each_style(style, lines):
    from codemt.write.templates import Parameter

    paragraphs = class_docstring("A point.", [Parameter("x", "float"), Parameter("y")], style)
    texts = [p.text for p in paragraphs]
    assert texts == ["A point.", *([""] if lines else []), *lines]


def test_documenting_classes_writes_each_and_changes_nothing_else(source, tmp_path):
    settings = DocstringSettings(classes=True, style="google", public_only=True)
    report = document([source.path], settings, "write", Summaries)
    assert not report.errors and report.documented_classes == 4
    text = source.path.read_text()
    tree = ast.parse(text)
    docs = {n.name: ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    assert docs["Point"] == textwrap.dedent("""\
        Summary of Point.

        Attributes:
            x (float):
            y (float):
            tags (list[str]):""")
    assert docs["Plain"] == "Summary of Plain."  # a one-line class became a block
    assert docs["_Hidden"] is None  # private, with --public-only
    assert 'class Plain:\n    """Summary of Plain."""\n    pass\n' in text
    # Check mode lists what lacks one (the functions too); nothing is left to list now.
    again = document(
        [source.path], DocstringSettings(classes=True, public_only=True), "check", None
    )
    assert again.classes == [] and again.missing == []


def test_a_class_given_a_siblings_summary_says_so_where_it_now_stands(source):
    """As for functions: the note names the class at its line in the file as written."""
    from codemt.generation import Translation

    told = "the summary of make_point (shapes.py:3), its names adapted"

    class Borrowing(Summaries):
        def translate_batch(self, records, target, style=None, **options):
            return [
                Translation(f"Summary of {r['name']}.", -1.0, origin=told * (r["name"] == "Plain"))
                for r in records
            ]

    def plain():
        return next(k for k in classes_of(read_source(source.path)) if k.name == "Plain")

    before = plain().line
    settings = DocstringSettings(classes=True, public_only=True)
    # Shown as a diff: the line of the file as it stands (the diff's `-` side).
    [(path, klass, origin)] = document([source.path], settings, "diff", Borrowing).borrowed
    assert (path, klass.name, origin, klass.line) == (source.path.as_posix(), "Plain", told, before)
    # Written: the line it has now, below the docstrings written above it.
    [(_, klass, _)] = document([source.path], settings, "write", Borrowing).borrowed
    after = plain()
    assert after.docstring == "Summary of Plain." and klass.line == after.line > before


def test_borrowed_functions_and_classes_are_reported_in_line_order(source):
    from codemt.generation import Translation

    class Borrowing(Summaries):
        def translate_batch(self, records, target, style=None, **options):
            return [Translation(f"Summary of {r['name']}.", -1.0, origin="a sibling's")
                    for r in records]  # fmt: skip

    settings = DocstringSettings(classes=True, public_only=True)
    borrowed = document([source.path], settings, "diff", Borrowing).borrowed
    lines = [item.line for _, item, _ in borrowed]
    names = {item.name for _, item, _ in borrowed}
    assert lines == sorted(lines) and {"Plain", "factory", "Point"} <= names
