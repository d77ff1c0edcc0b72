"""Text edits that write a generated docstring or body into a file, for the server and the LSP.

An editor and an HTTP client both want the same thing: the smallest edit that puts the
model's text into their file, leaving every other character (comments, formatting) alone.
The edit is made by the command line's own engine (`codemt.write.apply`: libcst, then the
same verification), so an editor gets exactly what `codemt docstring` would write, given
back as the one text edit between the old and the new file::

    functions = file_functions(text)
    node, record = find_function(functions, line=12)
    edit = insert_docstring(text, node, "Return the sum of a and b.")
    edit.apply(text)                       # the edited file
    lsp_range(text, edit.start, edit.end)  # where, as an LSP client counts

Offsets are indices into the Python string; `lsp_position` converts them into the
(line, character) pairs of the Language Server Protocol, in UTF-16 code units unless the
client negotiated another encoding.
"""

from __future__ import annotations

import ast
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codemt.source.extract import docstring_node, extract_methods
from codemt.source.reading import SkipFile, parse_with_repairs
from codemt.write.apply import (
    DEFAULT_LINE_LENGTH,
    LINE_BREAK,
    FunctionEdit,
    Paragraph,
    Source,
    SourceError,
    body_edit,
    docstring_edit,
    edit_functions,
    first_line_break,
    functions_in_order,
    literal_edit,
    parse_text,
    verify_edit,
)
from codemt.write.templates import is_stub as _is_placeholder

Function = ast.FunctionDef | ast.AsyncFunctionDef
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


def _paragraphs(docstring: str) -> list[Paragraph]:
    """A generated docstring's lines as paragraphs, each at its own indentation."""
    return [
        Paragraph(
            line.strip(), indent=len(line) - len(line.lstrip()), hang=4 if line[:1] == " " else 0
        )
        for line in docstring.split("\n")
    ]


def text_edit(old: str, new: str) -> TextEdit:
    """The one edit that turns `old` into `new`, as an editor shows it best: lines added
    are inserted at a line's start, and a change within lines replaces them whole (up to,
    not across, the last one's line break)."""
    start, end = 0, 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    while end < limit - start and old[len(old) - 1 - end] == new[len(new) - 1 - end]:
        end += 1
    stop, inserted = len(old) - end, new[start : len(new) - end]
    if start == stop:
        # An insertion may slide left over text equal to its own end: "x\n    |<doc>\n    "
        # is "x\n|    <doc>\n" too.
        while (
            start and inserted and old[start - 1] == inserted[-1] and old[start - 1] not in "\r\n"
        ):
            start, stop = start - 1, stop - 1
            inserted = old[start] + inserted[:-1]
        if start == 0 or old[start - 1] in "\r\n":
            return TextEdit(start, stop, inserted)
    first = max(old.rfind("\n", 0, start), old.rfind("\r", 0, start)) + 1
    found = LINE_BREAK.search(old, stop)
    last = found.start() if found and stop <= found.start() else len(old)
    if stop and old[stop - 1] in "\r\n" and stop > start:
        last = stop  # the change ends with a line break: the next line is not its
    return TextEdit(first, last, old[first:start] + inserted + old[stop:last])


def _engine_edit(text: str, node: Function, edit: FunctionEdit, changed: str) -> TextEdit:
    """What `edit` does to the function `node` of `text`, made by the command line's engine
    (`codemt.write.apply`: libcst, then verified) and given back as the smallest text edit.
    Raises ValueError where the edit cannot be made or would change more than `changed`."""
    import libcst as cst

    tree = parse_text("<editor>", text)
    where = (node.lineno, node.col_offset)
    order = functions_in_order(tree)
    index = next((i for i, f in enumerate(order) if (f.lineno, f.col_offset) == where), None)
    if index is None:
        raise ValueError(f"line {node.lineno}: no such function in the text")
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        raise ValueError(f"the file cannot be edited: {error.message}") from None
    new = edit_functions(module, {index: edit}).code
    ending = LINE_BREAK.search(text[-2:])
    if ending and text.endswith(ending.group(0)) and not new.endswith(ending.group(0)):
        new += ending.group(0)  # libcst drops a last lone "\r"
    source = Source(Path("<editor>"), text.encode("utf-8", "surrogatepass"), text, tree)
    try:
        verify_edit(source, new.encode("utf-8", "surrogatepass"), [index], changed)
    except SourceError as error:
        raise ValueError(error.message) from None
    return text_edit(text, new)


def insert_docstring(text: str, node: Function, docstring: str) -> TextEdit:
    """The edit that gives a function without a docstring this docstring, as `codemt
    docstring` writes it: below the header, indented as the body, wrapped to the line
    length; a body on the header's line (`def f(x): return x`) moves below it."""
    if docstring_node(node) is not None:
        raise ValueError(f"line {node.lineno}: the function already has a docstring")
    written = docstring_edit(
        _paragraphs(docstring), line_length=DEFAULT_LINE_LENGTH, newline=first_line_break(text)
    )
    return _engine_edit(text, node, written, "docstring")


def replace_docstring(text: str, node: Function, literal: str) -> TextEdit:
    """The edit that replaces a function's docstring literal by `literal` (its lines
    joined by `\\n`, written with the file's own line break)."""
    value = docstring_node(node)
    if value is None:
        raise ValueError(f"line {node.lineno}: the function has no docstring")
    literal_now = ast.get_source_segment(text, value) or ""
    expected = literal_now.replace("\r\n", "\n").replace("\r", "\n")
    written = literal_edit(expected, literal, first_line_break(text))
    return _engine_edit(text, node, written, "docstring")


def replace_body(text: str, node: Function, body: str) -> TextEdit:
    """The edit that replaces a stub's placeholder (see `is_stub`) by a generated body, as
    `codemt complete` writes it: the body takes the function's indentation."""
    if not is_stub(node):
        raise ValueError(
            f"line {node.lineno}: not a stub (a docstring followed by ..., pass or "
            f"raise NotImplementedError)"
        )
    if not body.strip():
        raise ValueError("the generated body is empty")
    return _engine_edit(text, node, body_edit(body), "body")
