"""Hand-worked extraction: this source gives these method records."""

import ast

from codemt.source.extract import extract_methods, method_source

SOURCE = '''\
import os
from typing import overload

try:
    import json
except ImportError:  # pragma: no cover
    json = None


class Shape(Base, metaclass=Meta):
    """A shape."""

    @property
    def area(self) -> float:
        """Return the area."""
        # a comment that unparsing drops
        return self.w * self.h

    @overload
    def scale(self, k: int) -> "Shape": ...

    class Inner:
        async def fetch(self, *urls, timeout=1.0, **kw):
            return await get(urls)


def outer(a, b=2):
    def inner(x):
        """Add b."""
        return x + b

    return inner(a)


if os.name == "nt":
    def windows_only():
        pass
'''


def records():
    return [r for _, r in extract_methods(ast.parse(SOURCE), repo="acme/geo", path="geo.py")]


def test_names_and_order():
    names = [r["name"] for r in records()]
    assert names == [
        "Shape.area",
        "Shape.scale",
        "Shape.Inner.fetch",
        "outer",
        "outer.<locals>.inner",
        "windows_only",
    ]


def test_method_with_docstring_and_decorator():
    area = records()[0]
    assert area == {
        "repo": "acme/geo",
        "path": "geo.py",
        "name": "Shape.area",
        "lineno": 14,
        "signature": "def area(self) -> float:",
        "docstring": "Return the area.",
        "docstring_raw": "Return the area.",
        "body": "    return self.w * self.h",
        "decorators": ["property"],
        "class_name": "Shape",
        "class_bases": ["Base", "metaclass=Meta"],
        "class_docstring": "A shape.",
        "imports": ["import os", "from typing import overload", "import json"],
        "docstring_style": "summary",
        "is_async": False,
        "split": "",
    }


def test_overload_stub_async_nested_class_and_nested_function():
    by_name = {r["name"]: r for r in records()}
    scale = by_name["Shape.scale"]
    assert scale["signature"] == "def scale(self, k: int) -> 'Shape':"
    assert scale["body"] == "    ..."
    assert scale["decorators"] == ["overload"]

    fetch = by_name["Shape.Inner.fetch"]
    assert fetch["signature"] == "async def fetch(self, *urls, timeout=1.0, **kw):"
    assert fetch["is_async"] and fetch["class_name"] == "Inner" and fetch["class_docstring"] == ""
    assert fetch["body"] == "    return await get(urls)"

    outer = by_name["outer"]
    assert (
        outer["body"]
        == '    def inner(x):\n        """Add b."""\n        return x + b\n    return inner(a)'
    )
    inner = by_name["outer.<locals>.inner"]
    assert (inner["signature"], inner["docstring"], inner["class_name"]) == (
        "def inner(x):",
        "Add b.",
        "",
    )
    assert by_name["windows_only"]["lineno"] == 36


def test_method_source_round_trips_through_the_parser():
    for record in records():
        rebuilt = ast.parse(method_source(record)).body[0]
        assert rebuilt.name == record["name"].rsplit(".", 1)[-1]
    area = method_source(records()[0])
    assert (
        area == 'def area(self) -> float:\n    """Return the area."""\n    return self.w * self.h\n'
    )


def test_docstring_with_quotes_and_backslashes_survives_rebuild():
    tree = ast.parse('def f():\n    """Has \\\\ backslash and \\"\\"\\" quotes."""\n    return 1\n')
    ((_, record),) = extract_methods(tree, repo="r", path="p")
    rebuilt = ast.parse(method_source(record)).body[0]
    assert ast.get_docstring(rebuilt) == record["docstring_raw"]
