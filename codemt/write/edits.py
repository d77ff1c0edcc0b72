"""Text edits that write a generated docstring or body into a file, for the server and the LSP.

An editor and an HTTP client both want the same thing: the smallest edit that puts the
model's text into their file, leaving every other character (comments, formatting) alone.
The edit is found on the file's own syntax tree, so its line numbers are the file's::

    functions = file_functions(text)
    node, record = find_function(functions, line=12)
    edit = docstring_edit(text, node, "Return the sum of a and b.")
    edit.apply(text)                       # the edited file
    lsp_range(text, edit.start, edit.end)  # where, as an LSP client counts

Offsets are indices into the Python string; `lsp_position` converts them into the
(line, character) pairs of the Language Server Protocol, in UTF-16 code units unless the
client negotiated another encoding.
"""

from __future__ import annotations

import ast
import bisect
import re
import textwrap
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codemt.source.extract import docstring_node, extract_methods
from codemt.source.reading import SkipFile, parse_with_repairs
from codemt.write.apply import DEFAULT_LINE_LENGTH, Paragraph
from codemt.write.apply import docstring_literal as written_literal
from codemt.write.templates import is_stub as _is_placeholder

Function = ast.FunctionDef | ast.AsyncFunctionDef
# The line breaks of Python's tokenizer and of the LSP alike (str.splitlines knows more).
LINE_BREAK = re.compile(r"\r\n|\r|\n")
# LSP position encodings: the codec and bytes per code unit (UTF-16 counts two units for
# characters beyond the Basic Multilingual Plane, which is why editors' columns differ).
CODE_UNITS = {"utf-8": ("utf-8", 1), "utf-16": ("utf-16-le", 2), "utf-32": ("utf-32-le", 4)}


@dataclass(frozen=True)
class TextEdit:
    """Replace `text[start:end]` by `new_text` (an insertion when start == end)."""

    start: int
    end: int
    new_text: str

    def apply(self, text: str) -> str:
        """The text with this edit made."""
        return text[: self.start] + self.new_text + text[self.end :]


# ------------------------------------------------------------------ positions


def line_starts(text: str) -> list[int]:
    """The offset at which each line of `text` begins (line 1 first)."""
    return [0, *(m.end() for m in LINE_BREAK.finditer(text))]


def lsp_position(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of an offset: 0-based, characters in `encoding` code units.

    `encoding` is an LSP position encoding: utf-16 (the protocol's default), utf-8 or utf-32.
    """
    codec, unit = CODE_UNITS[encoding]
    starts = line_starts(text)
    line = bisect.bisect_right(starts, offset) - 1
    return line, len(text[starts[line] : offset].encode(codec)) // unit


def lsp_range(
    text: str, start: int, end: int, encoding: str = "utf-16"
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The LSP range of `text[start:end]`, as ((line, character), (line, character))."""
    return lsp_position(text, start, encoding), lsp_position(text, end, encoding)


def _offset(text: str, starts: list[int], line: int, col_bytes: int) -> int:
    """The offset of an ast position: a 1-based line and a UTF-8 byte column."""
    begin = starts[line - 1]
    end = starts[line] if line < len(starts) else len(text)
    return begin + len(text[begin:end].encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))


def _newline(text: str) -> str:
    """The file's own line break (its first one), so that edits do not mix styles."""
    found = LINE_BREAK.search(text)
    return found.group(0) if found else "\n"


# ------------------------------------------------------------------ finding functions


def file_functions(text: str) -> list[tuple[Function, dict[str, Any]]]:
    """Every function of a file as (node, record), the records as the miner extracts them.

    The file is parsed as it is (no repairs), so that node positions are the file's.
    Raises ValueError ("line N: message") when it does not parse.
    """
    try:
        tree = parse_with_repairs(text, repair=False)[0]
    except SkipFile as error:
        raise ValueError(f"the file is not valid Python: {error}") from None
    return list(extract_methods(tree, repo="", path=""))


def find_function(
    functions: Sequence[tuple[Function, dict[str, Any]]],
    *,
    line: int | None = None,
    name: str | None = None,
) -> tuple[Function, dict[str, Any]]:
    """The function named `name` (qualified, e.g. `Class.method`) or the innermost one on `line`.

    `line` is 1-based and may be any line from the first decorator to the function's end;
    with both, the function must match both. Raises LookupError saying what is there.
    """
    if line is None and name is None:
        raise ValueError("give a line or a function name")
    found = [
        (node, record)
        for node, record in functions
        if (name is None or record["name"] == name)
        and (line is None or first_line(node) <= line <= (node.end_lineno or node.lineno))
    ]
    if not found:
        names = ", ".join(r["name"] for _, r in functions) or "none"
        where = " and ".join(
            part
            for part in (f"named {name!r}" if name else "", f"on line {line}" if line else "")
            if part
        )
        raise LookupError(f"no function {where}; the functions in the file are: {names}")
    # Nested functions start later than the functions that hold them.
    return max(found, key=lambda item: first_line(item[0]))


def first_line(node: Function) -> int:
    """The 1-based line where a function begins: its first decorator's, else its `def`'s."""
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def is_stub(node: Function) -> bool:
    """Whether a function is a docstring and a placeholder: `...`, `pass` or `raise NotImplementedError`."""
    return docstring_node(node) is not None and _is_placeholder(node)


# ------------------------------------------------------------------ edits


def docstring_literal(docstring: str, indent: str, line_length: int = DEFAULT_LINE_LENGTH) -> str:
    """The literal `codemt docstring` writes for `docstring` (`codemt.write.apply`: one line
    when it fits, else PEP 257 layout wrapped to `line_length`, escaped alike): each of
    its lines a paragraph at its own indentation. Continuation lines are indented by
    `indent` (the body's)."""
    paragraphs = [
        Paragraph(
            line.strip(), indent=len(line) - len(line.lstrip()), hang=4 if line[:1] == " " else 0
        )
        for line in docstring.split("\n")
    ]
    return written_literal(paragraphs, indent, line_length=line_length)


def _header_colon(text: str, starts: list[int], node: Function) -> tuple[int, int]:
    """The 1-based line and offset of the colon that ends a function's header."""
    rest = text[starts[node.lineno - 1] :]
    lines = (m.group(0) for m in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z", rest))
    depth = 0
    for token in tokenize.generate_tokens(lambda: next(lines, "")):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.OP and token.string == ":" and depth == 0:
            line = node.lineno + token.start[0] - 1
            return line, starts[line - 1] + token.end[1]
    raise AssertionError(f"line {node.lineno}: a function header without a colon")


def docstring_edit(text: str, node: Function, docstring: str) -> TextEdit:
    """The edit that gives a function without a docstring this docstring.

    The literal goes on the line below the header, indented as the body is. A body on the
    header's line (`def f(x): return x`) is moved to a line of its own below the docstring.
    """
    if docstring_node(node) is not None:
        raise ValueError(f"line {node.lineno}: the function already has a docstring")
    starts = line_starts(text)
    newline = _newline(text)
    first = node.body[0]
    colon_line, colon = _header_colon(text, starts, node)
    if first.lineno > colon_line:  # the body starts on a line of its own
        start = _offset(text, starts, first.lineno, first.col_offset)
        indent = text[starts[first.lineno - 1] : start]
        literal = docstring_literal(docstring, indent).replace("\n", newline)
        return TextEdit(starts[colon_line], starts[colon_line], indent + literal + newline)
    # The body shares the header's line: break the line after the colon.
    header = text[starts[node.lineno - 1] :]
    indent = header[: len(header) - len(header.lstrip())] + "    "
    end = _offset(text, starts, first.lineno, first.col_offset)
    literal = docstring_literal(docstring, indent)
    return TextEdit(colon, end, f"\n{indent}{literal}\n{indent}".replace("\n", newline))


def docstring_replacement(text: str, node: Function, literal: str) -> TextEdit:
    """The edit that replaces a function's docstring literal by `literal` (its lines
    joined by `\\n`, written with the file's own line break)."""
    value = docstring_node(node)
    if value is None:
        raise ValueError(f"line {node.lineno}: the function has no docstring")
    starts = line_starts(text)
    start = _offset(text, starts, value.lineno, value.col_offset)
    end = _offset(text, starts, value.end_lineno or value.lineno, value.end_col_offset or 0)
    return TextEdit(start, end, literal.replace("\n", _newline(text)))


def body_edit(text: str, node: Function, body: str) -> TextEdit:
    """The edit that replaces a stub's placeholder (see `is_stub`) by a generated body.

    `body` is indented for a function at column 0 (as `Translator` returns it); it is
    re-indented to the placeholder's indentation. The placeholder's whole lines are replaced.
    """
    if not is_stub(node):
        raise ValueError(
            f"line {node.lineno}: not a stub (a docstring followed by ..., pass or "
            f"raise NotImplementedError)"
        )
    if not body.strip():
        raise ValueError("the generated body is empty")
    placeholder = node.body[1]
    starts = line_starts(text)
    start = _offset(text, starts, placeholder.lineno, placeholder.col_offset)
    indent = text[starts[placeholder.lineno - 1] : start]
    if indent.strip():
        raise ValueError(f"line {placeholder.lineno}: the placeholder shares its line with code")
    last = placeholder.end_lineno or placeholder.lineno
    line_end = starts[last] if last < len(starts) else len(text)
    # Up to the line break that ends the placeholder's last line, which stays.
    end = starts[last - 1] + len(text[starts[last - 1] : line_end].rstrip("\r\n"))
    new_body = textwrap.indent(textwrap.dedent(body), indent).replace("\n", _newline(text))
    return TextEdit(start - len(indent), end, new_body)
