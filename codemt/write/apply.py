"""Applying generated text to a user's files: libcst edits, a verification, atomic writes.

Edits go through a concrete syntax tree (libcst), so whatever an edit does not touch keeps
its bytes: comments, blank lines, quotes, the encoding (PEP 263 cookie or BOM), the line
endings and the indentation. A new docstring is indented as its function's body and
wrapped to the line length; a one-line function (`def f(): return 1`) becomes a block.

Before a file is written, its new text is parsed and its AST compared with the old one's,
apart from what the edit was meant to change. Then a temporary file in the same folder
replaces it (`os.replace`, atomic on POSIX and Windows), so a file is only ever old or new.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemt.source.extract import docstring_node, extract_methods
from codemt.source.reading import SkipFile, decode_source, source_encoding
from codemt.write.atomic import NotWritten, write_atomically

if TYPE_CHECKING:
    import libcst as cst

MAX_FILE_BYTES = 10_000_000
# Narrower than this, wrapping a deeply indented docstring would only make it harder to read.
MIN_WRAP_WIDTH = 40
# How many columns a tab of indentation counts for when a docstring is wrapped.
TAB_COLUMNS = 4
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class SourceError(Exception):
    """A file that cannot be read, edited or written: where, and what is wrong."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = str(path)
        self.line = line
        self.message = message


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Function:
    """A function or method of a file, with what the writers need to know about it.

    Attributes:
        name: the qualified name (`Class.method`, `outer.<locals>.inner`).
        index: its place among the file's functions in source order (nested ones after
            their parent), which identifies it to the editor and the verification.
        line: the line of its `def` (or `async def`).
        lines: how many lines it spans, from `def` to its last statement.
        docstring: its docstring as `inspect.cleandoc` leaves it ("" when it has none).
        record: the method as the Translator reads it (the miner's record).
        node: its AST node.
    """

    name: str
    index: int
    line: int
    lines: int
    docstring: str
    record: dict[str, Any]
    node: ast.FunctionDef | ast.AsyncFunctionDef

    @property
    def public(self) -> bool:
        """Whether every part of its name is public: no `_private` part, not nested in a function.

        Dunder methods (`__init__`) are public: they are part of a class's interface.
        """
        parts = self.name.split(".")
        if "<locals>" in parts:
            return False
        return not any(
            p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts
        )

    @property
    def is_method(self) -> bool:
        """Whether its first parameter is the instance or class (a method, not a staticmethod)."""
        decorators = self.record["decorators"]
        return bool(self.record["class_name"]) and not any(
            d.split(".")[-1] == "staticmethod" for d in decorators
        )


# The line breaks of Python's tokenizer and of the LSP alike (str.splitlines knows more).
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def first_line_break(text: str) -> str:
    """A file's own line break: its first one ("\\n" in a file of one line), so that what
    is written into it does not mix styles."""
    found = LINE_BREAK.search(text)
    return found.group(0) if found else "\n"


@dataclass(frozen=True)
class Source:
    """A Python file read for editing: its bytes, its decoded text and its AST."""

    path: Path
    data: bytes
    text: str  # decoded, newlines normalised to "\n" as the parser reads them
    tree: ast.Module

    @cached_property
    def newline(self) -> str:
        """The file's own line break (`first_line_break` of its bytes)."""
        return first_line_break(self.data.decode("latin-1"))  # a byte a character

    @cached_property
    def functions(self) -> list[Function]:
        """Every function and method of the file, in the order the miner finds them."""
        index = {id(node): i for i, node in enumerate(functions_in_order(self.tree))}
        found = []
        for node, record in extract_methods(self.tree, repo="", path=str(self.path)):
            doc = docstring_node(node)
            found.append(
                Function(
                    name=record["name"],
                    index=index[id(node)],
                    line=node.lineno,
                    lines=(node.end_lineno or node.lineno) - node.lineno + 1,
                    # Not the miner's cleaning, which drops non-ASCII: a docstring in
                    # Chinese is a docstring.
                    docstring=inspect.cleandoc(doc.value) if doc is not None else "",
                    record=record,
                    node=node,
                )
            )
        return found


def functions_in_order(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function of a tree in source order: the order libcst visits them in."""
    functions = [node for node in ast.walk(tree) if isinstance(node, _FUNCTIONS)]
    return sorted(functions, key=lambda node: (node.lineno, node.col_offset))


def parse_text(path: str | Path, text: str) -> ast.Module:
    """The AST of a file's text, or a SourceError naming the line of the syntax error."""
    try:
        return ast.parse(text)
    except SyntaxError as error:
        raise SourceError(path, error.lineno or 0, error.msg) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise SourceError(path, 0, f"cannot parse: {error or type(error).__name__}") from None


def read_source(path: Path) -> Source:
    """Read and parse a Python file; a SourceError says why a file cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(path, 0, f"cannot read: {error.strerror or error}") from None
    try:
        text = decode_source(data, max_bytes=MAX_FILE_BYTES)
    except SkipFile as error:
        raise SourceError(path, 0, str(error)) from None
    return Source(path, data, text, parse_text(path, text))


def parse_cst(source: Source) -> cst.Module:
    """The concrete syntax tree of a file, in the encoding `decode_source` read it with."""
    import libcst as cst

    config = cst.PartialParserConfig(encoding=source_encoding(source.data))
    try:
        return cst.parse_module(source.data, config)
    except cst.ParserSyntaxError as error:
        # Python accepted the file but libcst does not (syntax newer than libcst knows).
        message = f"libcst cannot edit it: {error.message}"
        raise SourceError(source.path, error.raw_line, message) from None


# ------------------------------------------------------------------ docstring text


# Columns that written docstrings are wrapped to (`--line-length`), black's default.
DEFAULT_LINE_LENGTH = 88


@dataclass(frozen=True)
class Paragraph:
    """One logical line of a docstring, wrapped to the line length when it is written.

    `indent` columns of spaces come before it inside the docstring; lines it wraps onto
    are indented by `hang` more. An empty text is a blank line.
    """

    text: str
    indent: int = 0
    hang: int = 0


def _escape(text: str) -> str:
    """Text made safe inside a triple-double-quoted literal (backslashes, quotes, controls)."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _wrap(text: str, width: int, *, first: str = "", hang: int = 0) -> list[str]:
    """Words of `text` filled into lines of at most `width` (longer words stay whole)."""
    return textwrap.wrap(
        " ".join(text.split()),
        width,
        initial_indent=first,
        subsequent_indent=" " * hang,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first]


def docstring_literal(
    paragraphs: Sequence[Paragraph], indent: str, *, line_length: int, newline: str = "\n"
) -> str:
    """A docstring's source: `\"\"\"Summary.\"\"\"` on one line when it fits, else PEP 257 layout.

    `indent` is the function body's indentation (lines after the first start with it);
    `newline` the file's line ending. The summary is `paragraphs[0]`.
    """
    width = max(line_length - len(indent.expandtabs(TAB_COLUMNS)), MIN_WRAP_WIDTH)
    summary = " ".join(_escape(paragraphs[0].text).split())
    if len(paragraphs) == 1 and len(summary) + 6 <= width:
        # A closing quote right after text would end the literal early: escape it.
        return f'"""{summary[:-1]}\\""""' if summary.endswith('"') else f'"""{summary}"""'
    lines = _wrap(summary, width, first='"""')
    for paragraph in paragraphs[1:]:
        if not paragraph.text.strip():
            lines.append("")
            continue
        margin = " " * paragraph.indent
        wrapped = _wrap(_escape(paragraph.text), width - paragraph.indent, hang=paragraph.hang)
        lines += [margin + line for line in wrapped]
    lines.append('"""')
    return newline.join([lines[0]] + [indent + line if line else "" for line in lines[1:]])


# ------------------------------------------------------------------ editing


# An edit of one function: (the function as a block, its body's indentation) -> new function.
FunctionEdit = Callable[["cst.FunctionDef", str], "cst.FunctionDef"]


def as_block(function: cst.FunctionDef | cst.ClassDef) -> cst.FunctionDef | cst.ClassDef:
    """A function whose body is an indented block (`def f(): return 1` becomes two lines)."""
    import libcst as cst

    suite = function.body
    if isinstance(suite, cst.IndentedBlock):
        return function
    # The suite's trailing comment stays on the `def` line; its statements keep their order.
    block = cst.IndentedBlock(
        header=suite.trailing_whitespace, body=[cst.SimpleStatementLine(body=suite.body)]
    )
    return function.with_changes(body=block)


def _function_editor(
    default_indent: str,
    edits: Mapping[int, FunctionEdit],
    class_edits: Mapping[int, FunctionEdit] | None = None,
) -> Any:
    """A libcst transformer that applies edits to functions, by index in source order
    (and `class_edits` to classes, by their own index in source order).

    The class is made here, not at import, so that only a run that edits imports libcst
    (a second of start-up that `codemt --help` and `--check` need not pay).
    """
    import libcst as cst

    class FunctionEditor(cst.CSTTransformer):
        def __init__(self) -> None:
            super().__init__()
            self.enclosing: list[str] = []  # the relative indentation of each enclosing block
            self.count = 0  # functions met so far, in source order
            self.open: list[int] = []  # the indices of the functions being visited
            self.applied: set[int] = set()
            self.classes = 0  # classes met so far
            self.open_classes: list[int] = []
            self.applied_classes: set[int] = set()

        # Simple statements, parameters and decorators hold no function definition: not
        # descending into them makes the walk several times faster.
        def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
            return False

        def visit_SimpleStatementSuite(self, node: cst.SimpleStatementSuite) -> bool:
            return False

        def visit_Parameters(self, node: cst.Parameters) -> bool:
            return False

        def visit_Decorator(self, node: cst.Decorator) -> bool:
            return False

        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> bool:
            self.enclosing.append(default_indent if node.indent is None else node.indent)
            return True

        def leave_IndentedBlock(
            self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
        ) -> cst.IndentedBlock:
            self.enclosing.pop()
            return updated_node

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            self.open.append(self.count)
            self.count += 1
            return True

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            self.open_classes.append(self.classes)
            self.classes += 1
            return True

        def leave_ClassDef(
            self, original_node: cst.ClassDef, updated_node: cst.ClassDef
        ) -> cst.ClassDef:
            index = self.open_classes.pop()
            edit = (class_edits or {}).get(index)
            if edit is None:
                return updated_node
            self.applied_classes.add(index)
            return self.apply(edit, updated_node)

        def leave_FunctionDef(
            self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
        ) -> cst.FunctionDef:
            index = self.open.pop()
            edit = edits.get(index)
            if edit is None:
                return updated_node
            self.applied.add(index)
            return self.apply(edit, updated_node)

        def apply(self, edit: FunctionEdit, node: Any) -> Any:
            """`edit` of a function or class, given the indentation of its body."""
            body = node.body
            relative = body.indent if isinstance(body, cst.IndentedBlock) else None
            indent = "".join(self.enclosing) + (default_indent if relative is None else relative)
            return edit(as_block(node), indent)

    return FunctionEditor()


def edit_functions(
    module: cst.Module,
    edits: Mapping[int, FunctionEdit],
    class_edits: Mapping[int, FunctionEdit] | None = None,
) -> cst.Module:
    """Apply `edits` to a module's functions, keyed by `Function.index`, and
    `class_edits` to its classes, keyed by their index in source order."""
    editor = _function_editor(module.default_indent, edits, class_edits)
    edited = module.visit(editor)
    missing = sorted(set(edits) - editor.applied)
    assert not missing, f"no function {missing[0]} in the module (of {editor.count})"
    missing = sorted(set(class_edits or ()) - editor.applied_classes)
    assert not missing, f"no class {missing[0]} in the module (of {editor.classes})"
    return edited


def docstring_edit(
    paragraphs: Sequence[Paragraph], *, line_length: int, newline: str
) -> FunctionEdit:
    """An edit that gives a function this docstring, replacing the one it has, if any."""
    import libcst as cst

    def edit(function: cst.FunctionDef, indent: str) -> cst.FunctionDef:
        literal = docstring_literal(paragraphs, indent, line_length=line_length, newline=newline)
        docstring = cst.Expr(cst.SimpleString(literal))
        body = list(function.body.body)
        if function.get_docstring(clean=False) is not None:
            first = body[0]  # a docstring is the first statement of its line
            kept = first.body[0].semicolon  # `"""old"""; x = 1` keeps its `; x = 1`
            body[0] = first.with_changes(
                body=[docstring.with_changes(semicolon=kept), *first.body[1:]]
            )
        else:
            body.insert(0, cst.SimpleStatementLine(body=[docstring]))
        return function.with_changes(body=function.body.with_changes(body=body))

    return edit


def body_edit(body: str) -> FunctionEdit:
    """An edit that replaces a function's statements (its docstring kept) with `body`.

    `body` is the source of statements indented by any consistent amount; they take the
    function's indentation and the file's indentation unit. Raises ValueError when `body`
    does not parse.
    """
    import libcst as cst

    # Parsed inside a stand-in function so libcst records nested blocks' indentation as
    # relative: the file's own indentation unit applies when they are written into it.
    try:
        shell = cst.parse_module(f"def _():\n{textwrap.indent(textwrap.dedent(body), '    ')}\n")
    except cst.ParserSyntaxError as error:
        raise ValueError(f"the body does not parse: {error.message}") from None
    statements = shell.body[0].body.body

    def edit(function: cst.FunctionDef, indent: str) -> cst.FunctionDef:
        kept = function.body.body[:1] if function.get_docstring(clean=False) is not None else ()
        return function.with_changes(body=function.body.with_changes(body=[*kept, *statements]))

    return edit


def literal_edit(expected: str, literal: str, newline: str) -> FunctionEdit:
    """An edit that replaces a function's docstring literal `expected` (as read, newlines
    as `\\n`) with `literal`, its lines joined by the file's `newline`; a ValueError if the
    file's literal is another (changed since it was read)."""
    import libcst as cst

    def edit(function: cst.FunctionDef, indent: str) -> cst.FunctionDef:
        first = function.body.body[0]
        expression = first.body[0] if isinstance(first, cst.SimpleStatementLine) else None
        string = getattr(expression, "value", None)
        value = string.value if isinstance(string, cst.SimpleString) else None
        if value is None or value.replace("\r\n", "\n").replace("\r", "\n") != expected:
            raise ValueError("the docstring is not the one read")
        new = string.with_changes(value=literal.replace("\n", newline))
        body = [first.with_changes(body=[expression.with_changes(value=new), *first.body[1:]])]
        return function.with_changes(
            body=function.body.with_changes(body=[*body, *function.body.body[1:]])
        )

    return edit


def encode(path: Path, module: cst.Module) -> bytes:
    """A module's bytes in its file's encoding; a SourceError when a character does not fit."""
    try:
        return module.bytes
    except UnicodeEncodeError as error:
        bad = error.object[error.start : error.end]
        raise SourceError(
            path, 0, f"the new text has {bad!r}, which the file's encoding {module.encoding} lacks"
        ) from None


# ------------------------------------------------------------------ verification


def classes_in_order(tree: ast.Module) -> list[ast.ClassDef]:
    """Every class of a tree in source order: the order libcst visits them in."""
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    return sorted(classes, key=lambda node: (node.lineno, node.col_offset))


def _normalised_dump(
    tree: ast.Module,
    chosen: Iterable[int],
    change: Callable[[ast.FunctionDef], None],
    classes: Iterable[int] = (),
) -> str:
    functions = functions_in_order(tree)
    in_order = classes_in_order(tree)
    for index in classes:  # a class's docstring, the one thing a class edit changes
        _drop_docstring(in_order[index])
    for index in chosen:
        change(functions[index])
    return ast.dump(tree)


def _drop_docstring(function: ast.FunctionDef) -> None:
    if docstring_node(function) is not None:
        function.body = function.body[1:]


def _drop_statements(function: ast.FunctionDef) -> None:
    function.body = function.body[:1] if docstring_node(function) is not None else []


# What each kind of edit may change in a function: the rest of the file must stay the same.
ALLOWED_CHANGES: dict[str, Callable[[ast.FunctionDef], None]] = {
    "docstring": _drop_docstring,
    "body": _drop_statements,
}


def verify_edit(
    source: Source,
    new_data: bytes,
    indices: Iterable[int],
    changed: str,
    classes: Iterable[int] = (),
) -> None:
    """Check that new bytes parse and differ from the source only where edits were meant.

    `indices` are the edited functions' `Function.index` (`classes`: the classes whose
    docstrings were written, by index in source order); `changed` names
    what an edit may change (a key of ALLOWED_CHANGES). The trees are compared with
    `ast.dump` after that part is removed from the edited functions in both. Raises
    SourceError when the new text does not decode, parse or match.
    """
    try:
        new_text = decode_source(new_data, max_bytes=2 * MAX_FILE_BYTES)
    except SkipFile as error:
        raise SourceError(source.path, 0, f"the edited file cannot be read: {error}") from None
    try:
        new_tree = parse_text(source.path, new_text)
    except SourceError as error:
        raise SourceError(source.path, 0, f"the edit would not parse: {error}") from None
    old_tree = ast.parse(source.text)  # a fresh tree: the change mutates it
    chosen = sorted(set(indices))
    change = ALLOWED_CHANGES[changed]
    classes = sorted(set(classes))
    if len(functions_in_order(new_tree)) != len(functions_in_order(old_tree)) or _normalised_dump(
        old_tree, chosen, change, classes
    ) != _normalised_dump(new_tree, chosen, change, classes):
        raise SourceError(
            source.path, 0, f"the edit would change more than {changed}s; not written"
        )


# ------------------------------------------------------------------ writing


_HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")
_DEFINITION = re.compile(r"\s*(?:async\s+def|def|class)\s+\w")


def unified_diff(name: str, old: str, new: str) -> str:
    """A unified diff between two texts of file `name`, as `git diff` shows it: each hunk
    header names the function or class its first change is in."""
    old_lines = old.splitlines(keepends=True)
    lines = list(
        difflib.unified_diff(
            old_lines,
            new.splitlines(keepends=True),
            f"a/{name.lstrip('/')}",
            f"b/{name.lstrip('/')}",
        )
    )
    for i, line in enumerate(lines):
        hunk = _HUNK.match(line)
        if not hunk:
            continue
        # The old line number of the first change: the hunk's start plus its context.
        at = int(hunk.group(1)) - 1
        for following in lines[i + 1 :]:
            if following[:1] in "-+" or following.startswith("@@"):
                break
            at += 1
        definition = next(
            (
                old_lines[j]
                for j in range(min(at, len(old_lines)) - 1, -1, -1)
                if _DEFINITION.match(old_lines[j])
            ),
            "",
        )
        if definition:
            lines[i] = f"{hunk.group(0)} {definition.strip()}\n"
    return "".join(
        line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n" for line in lines
    )


@dataclass(frozen=True)
class Change:
    """A file's verified new content, in the file's encoding."""

    source: Source
    new_data: bytes
    encoding: str


def show_or_write(changes: Iterable[Change], mode: str) -> list[SourceError]:
    """Print changes as a unified diff (`mode` "diff") or write each file atomically ("write").

    Returns the files that could not be written; the others are written all the same.
    """
    errors = []
    for change in changes:
        path = change.source.path
        if mode == "diff":
            old = change.source.data.decode(change.encoding)
            new = change.new_data.decode(change.encoding)
            sys.stdout.write(unified_diff(path.as_posix(), old, new))
            continue
        try:
            write_atomically(path, change.new_data, expected=change.source.data)
        except NotWritten as error:
            errors.append(SourceError(path, 0, str(error).removeprefix(f"{path} ")))
        except OSError as error:
            errors.append(SourceError(path, 0, f"not written: {error}"))
    return errors
