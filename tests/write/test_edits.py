"""Text edits for the server and the LSP: docstrings and bodies inserted, positions in LSP units."""

import ast

import pytest

from codemt.write.edits import (
    body_edit,
    docstring_edit,
    docstring_literal,
    file_functions,
    find_function,
    is_stub,
    lsp_range,
)

SOURCE = '''class A:
    @staticmethod
    def f(x,
          y: dict[str, int] = {"a": 1}) -> int:  # noqa
        # a comment
        return x + y

    def stub(self, s: str) -> int:
        """Count things."""
        raise NotImplementedError("later")  # TODO

def one(x): return x  # tail
'''


def edited(text: str, line: int, docstring: str) -> str:
    node, _ = find_function(file_functions(text), line=line)
    return docstring_edit(text, node, docstring).apply(text)


@pytest.mark.parametrize(
    "docstring",
    ["Add x and y.", 'Quote "x"', 'Has """ inside', "back\\slash\\", "Sum.\n\nArgs:\n    x: a"],
)
def test_docstring_literal_round_trips(docstring):
    tree = ast.parse(f"def f():\n    {docstring_literal(docstring, '    ')}\n")
    assert ast.get_docstring(tree.body[0]) == docstring


def test_docstring_goes_below_the_header_and_keeps_everything_else():
    text = edited(SOURCE, 5, "Add x and y.\n\nArgs:\n    x: a number")
    assert text == SOURCE.replace(
        "  # noqa\n",
        '  # noqa\n        """Add x and y.\n\n        Args:\n            x: a number\n        """\n',
    )
    assert ast.get_docstring(ast.parse(text).body[0].body[0]).startswith("Add x and y.")


def test_a_one_line_function_becomes_a_block():
    text = edited(SOURCE, 12, "Return x.")
    assert text.endswith('def one(x):\n    """Return x."""\n    return x  # tail\n')


def test_line_endings_are_kept():
    crlf = SOURCE.replace("\n", "\r\n")
    text = edited(crlf, 5, "Two\nlines.")
    assert "\n" not in text.replace("\r\n", "")
    ast.parse(text)


def test_a_stub_body_is_replaced_at_its_indentation():
    node, _ = find_function(file_functions(SOURCE), name="A.stub")
    assert is_stub(node)
    text = body_edit(
        SOURCE, node, "    n = len(s)\n    if n:\n        return n\n    return 0"
    ).apply(SOURCE)
    assert '"""Count things."""\n        n = len(s)\n        if n:\n            return n\n' in text
    assert (
        ast.parse(text)
        and "NotImplementedError" not in text
        and text.endswith("return x  # tail\n")
    )
    with pytest.raises(ValueError, match="empty"):
        body_edit(SOURCE, node, "  \n")


def test_only_stubs_with_a_docstring_are_stubs():
    functions = file_functions("def a():\n    pass\n\ndef b():\n    'Doc.'\n    return 1\n")
    assert not any(is_stub(node) for node, _ in functions)


def test_a_file_that_does_not_parse_names_the_line():
    with pytest.raises(ValueError, match="line 2"):
        file_functions("x = 1\ndef f(:\n")


def test_lsp_range_counts_utf16_units():
    text = 'x = "😀"; y = 1\n'
    assert lsp_range(text, text.index("y"), len(text)) == ((0, 10), (1, 0))
    assert lsp_range(text, text.index("y"), text.index("y"), "utf-8") == ((0, 12), (0, 12))


def test_find_function_picks_the_innermost():
    text = "def outer():\n    @staticmethod\n    def inner():\n        pass\n    return inner\n"
    functions = file_functions(text)
    assert find_function(functions, line=2)[1]["name"].endswith("inner")
    assert find_function(functions, line=5)[1]["name"] == "outer"
    with pytest.raises(LookupError, match="outer"):
        find_function(functions, name="missing")


def test_editors_write_the_literal_the_command_line_writes():
    """One literal for both: long summaries wrapped to the line length, PEP 257 layout."""
    from codemt.write.apply import Paragraph
    from codemt.write.apply import docstring_literal as written

    summary = "Return the number of items " + "in the long list of things " * 4 + "here."
    assert docstring_literal(summary, "    ") == written(
        [Paragraph(summary)], "    ", line_length=88
    )
    literal = docstring_literal(summary, "    ")
    assert literal.startswith('"""Return') and literal.endswith('\n    """')
    assert max(len(line) for line in literal.split("\n")) <= 88
