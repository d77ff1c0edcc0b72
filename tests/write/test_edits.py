"""Text edits for the server and the LSP: docstrings and bodies inserted, positions in LSP units."""

import ast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codemt.write.edits import (
    file_functions,
    find_function,
    insert_docstring,
    is_stub,
    lsp_range,
    replace_body,
    replace_docstring,
    text_edit,
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
    return insert_docstring(text, node, docstring).apply(text)


@pytest.mark.parametrize(
    "docstring",
    ["Add x and y.", 'Quote "x"', 'Has """ inside', "back\\slash\\", "Sum.\n\nArgs:\n    x: a"],
)
def test_docstring_literal_round_trips(docstring):
    text = edited("def f():\n    return 1\n", 1, docstring)
    assert ast.get_docstring(ast.parse(text).body[0]) == docstring


def test_docstring_goes_below_the_header_and_keeps_everything_else():
    text = edited(SOURCE, 5, "Add x and y.\n\nArgs:\n    x: a number")
    assert text == SOURCE.replace(
        "  # noqa\n",
        '  # noqa\n        """Add x and y.\n\n        Args:\n            x: a number\n        """\n',
    )
    assert ast.get_docstring(ast.parse(text).body[0].body[0]).startswith("Add x and y.")


def test_a_one_line_function_becomes_a_block():
    text = edited(SOURCE, 12, "Return x.")
    # As `codemt docstring` writes it: the comment stays with the `def` line.
    assert text.endswith('def one(x):  # tail\n    """Return x."""\n    return x\n')


def test_line_endings_are_kept():
    crlf = SOURCE.replace("\n", "\r\n")
    text = edited(crlf, 5, "Two\nlines.")
    assert "\n" not in text.replace("\r\n", "")
    ast.parse(text)


def test_a_stub_body_is_replaced_at_its_indentation():
    node, _ = find_function(file_functions(SOURCE), name="A.stub")
    assert is_stub(node)
    text = replace_body(
        SOURCE, node, "    n = len(s)\n    if n:\n        return n\n    return 0"
    ).apply(SOURCE)
    assert '"""Count things."""\n        n = len(s)\n        if n:\n            return n\n' in text
    assert (
        ast.parse(text)
        and "NotImplementedError" not in text
        and text.endswith("return x  # tail\n")
    )
    with pytest.raises(ValueError, match="empty"):
        replace_body(SOURCE, node, "  \n")


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


def test_editors_write_what_the_command_line_writes():
    """One engine for both: the editor's edit gives the file `codemt docstring` writes,
    long summaries wrapped to the line length in PEP 257 layout."""
    from codemt.write.apply import Paragraph, read_source
    from codemt.write.docstring import DocstringSettings, apply_docstrings

    summary = "Return the number of items " + "in the long list of things " * 4 + "here."
    text = SOURCE.replace("\n", "\r\n")
    node, _ = find_function(file_functions(text), name="one")
    by_editor = insert_docstring(text, node, summary).apply(text)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.py"
        path.write_bytes(text.encode())
        source = read_source(path)
        index = next(f.index for f in source.functions if f.name == "one")
        change = apply_docstrings(source, {index: [Paragraph(summary)]}, DocstringSettings())
    assert by_editor.encode() == change.new_data
    literal_lines = by_editor.split("def one(x):")[1].split("\r\n")
    assert literal_lines[1].startswith('    """Return') and max(map(len, literal_lines)) <= 88


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("abc", "abc"),
        ("abc", "abXc"),
        ("abc", "c"),
        ("", "x"),
        ("aaa", "aa"),
        ("ab\r\n", "a\r\nb"),
        ("x\n    y\n", "x\n    d\n    y\n"),
        ("a\nb\nc\n", "a\nc\n"),
        ("a\rb", "a\rXb\r"),
    ],
)
def test_the_text_edit_gives_the_new_text(old, new):
    edit = text_edit(old, new)
    assert edit.apply(old) == new
    assert edit.start == 0 or old[edit.start - 1] in "\r\n"  # whole lines


def test_a_docstring_is_replaced_with_the_file_line_breaks():
    text = 'def f(a):\r\n    """Old.\r\n\r\n    Args:\r\n        b: gone\r\n    """\r\n    return a\r\n'
    node, _ = find_function(file_functions(text), name="f")
    literal = '"""Old.\n\n    Args:\n        a: kept\n    """'
    new = replace_docstring(text, node, literal).apply(text)
    assert new == text.replace("b: gone", "a: kept")


def test_a_body_that_does_not_parse_is_refused():
    node, _ = find_function(file_functions(SOURCE), name="A.stub")
    with pytest.raises(ValueError, match="does not parse"):
        replace_body(SOURCE, node, "    return (")


@given(old=st.text(alphabet="ab \r\n", max_size=30), new=st.text(alphabet="ab \r\n", max_size=30))
def test_any_text_edit_gives_the_new_text_on_whole_lines(old, new):
    edit = text_edit(old, new)
    assert edit.apply(old) == new
    assert edit.start == 0 or old[edit.start - 1] in "\r\n"


def test_a_one_line_docstring_made_longer_takes_the_file_line_breaks():
    text = 'def f(a, b):\r\n    """Do it."""\r\n    return a\r\n'
    node, _ = find_function(file_functions(text), name="f")
    new = replace_docstring(text, node, '"""Do it.\n\n    Args:\n        b: more.\n    """').apply(
        text
    )
    assert "\n" not in new.replace("\r\n", "") and "b: more." in new


def test_a_file_of_lone_carriage_returns_keeps_its_last_one():
    text = "def f(x):\r    return x\r"
    node, _ = find_function(file_functions(text), name="f")
    new = insert_docstring(text, node, "Return x.").apply(text)
    assert new == 'def f(x):\r    """Return x."""\r    return x\r'
