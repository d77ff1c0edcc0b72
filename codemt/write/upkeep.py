"""Docstrings that stay true: what a docstring's sections say against what the code does.

`lint` names every disagreement (a `Finding` with a stable code, `CODES`); `update`
rewrites only what disagrees: parameter entries added, removed, renamed (when the rename
is unambiguous: one gone, one new), reordered to the signature's order, their types
mirrored where the docstring writes types; Returns and Yields added or removed; the
exceptions the function raises itself added. Every other line stays as it was: the
summary, free text, examples and each description a person wrote.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codemt.source.docstrings import GOOGLE, NUMPY, REST
from codemt.source.extract import docstring_node
from codemt.source.sections import (
    PARAMETERS,
    RAISES,
    RETURNS,
    SECTION_ORDER,
    YIELDS,
    Docstring,
    Entry,
    Section,
    Unreadable,
    bare_name,
    indentation,
    read_docstring,
    render,
)
from codemt.write.apply import Function, Source, SourceError, parse_text
from codemt.write.templates import (
    Descriptions,
    Facts,
    Parameter,
    facts_of,
    is_stub,
    parse_descriptions,
)

# Stable codes of `lint`, and what each means.
CODES = {
    "DS001": "function without a docstring",
    "DS101": "parameter not documented",
    "DS102": "documented parameter that the function does not have",
    "DS103": "parameters documented in another order than the signature's",
    "DS104": "documented type of a parameter is not its annotation",
    "DS201": "function returns a value but the docstring has no Returns",
    "DS202": "docstring has Returns but the function returns nothing",
    "DS301": "generator whose docstring has no Yields",
    "DS302": "docstring has Yields but the function yields nothing",
    "DS401": "exception raised but not documented",
    "DS402": "docstring documents exceptions but the function raises none itself",
    "DS900": "docstring sections that cannot be read (left as they are)",
}
# What `update` fixes (DS402 is left to the reader: the exceptions a function documents
# may come from what it calls).
UPDATED = frozenset(
    {"DS101", "DS102", "DS103", "DS104", "DS201", "DS202", "DS301", "DS302", "DS401"}
)
# Where a type suffix begins: `int, optional`, `int, default 3`.
_TYPE_SUFFIX = re.compile(r",\s*(optional|default\b.*)$")


@dataclass(frozen=True)
class Finding:
    """A disagreement between a docstring and its function."""

    code: str
    message: str


# ------------------------------------------------------------------ checking


def _stars(parameter: Parameter) -> str:
    return bare_name(parameter.name)


def _documented(doc: Docstring) -> list[tuple[str, Entry]]:
    """The parameters the docstring documents, in its order (rest's `:type` lines aside)."""
    return [
        (name, entry)
        for section in doc.of_kind(PARAMETERS)
        for entry in section.entries
        if entry.field != "type"
        for name in entry.names
    ]


def _short(exception: str) -> str:
    return exception.split(".")[-1]


def lint(
    doc: Docstring, facts: Facts, node: ast.FunctionDef | ast.AsyncFunctionDef
) -> list[Finding]:
    """What the docstring says that the function's code does not, and what it leaves out
    (nothing for a docstring without sections: a summary lists nothing)."""
    if doc.style not in (GOOGLE, NUMPY, REST):
        return []
    findings = []
    wanted = [_stars(p) for p in facts.parameters]
    documented = _documented(doc)
    names = [name for name, _ in documented]
    for parameter in facts.parameters:
        if _stars(parameter) not in names:
            findings.append(Finding("DS101", f"parameter {parameter.name} is not documented"))
    for name in names:
        if name not in wanted:
            findings.append(Finding("DS102", f"{name} is documented but is no parameter"))
    shared = [n for n in names if n in wanted]
    if shared != [n for n in wanted if n in shared]:
        order = ", ".join(wanted)
        findings.append(Finding("DS103", f"parameters documented out of the order ({order})"))
    for parameter in facts.parameters:
        written = _written_type(doc, _stars(parameter))
        if written and parameter.annotation and not _same_type(written, parameter.annotation):
            findings.append(
                Finding(
                    "DS104",
                    f"{parameter.name} is documented as {_bare_type(written)} but annotated "
                    f"{parameter.annotation}",
                )
            )
    stub = is_stub(node)
    is_property = any(ast.unparse(d).endswith("property") for d in node.decorator_list)
    for kind, fact, missing, extra in (
        (RETURNS, facts.returns, "DS201", "DS202"),
        (YIELDS, facts.yields, "DS301", "DS302"),
    ):
        has = bool(doc.of_kind(kind))
        if fact is not None and not has:
            findings.append(Finding(missing, CODES[missing]))
        if fact is None and has and not stub and not is_property:
            findings.append(Finding(extra, CODES[extra]))
    documented_raises = [n for s in doc.of_kind(RAISES) for e in s.entries for n in e.names]
    for exception in facts.raises:
        if _short(exception) not in {_short(n) for n in documented_raises}:
            findings.append(Finding("DS401", f"raises {exception}, which is not documented"))
    raises_any = any(isinstance(n, ast.Raise) for n in ast.walk(node))
    if documented_raises and not raises_any and not stub:
        findings.append(Finding("DS402", CODES["DS402"]))
    return findings


def _written_type(doc: Docstring, name: str) -> str:
    for section in doc.of_kind(PARAMETERS):
        for entry in section.entries:
            if name in entry.names and entry.type:
                return entry.type
    return ""


def _bare_type(written: str) -> str:
    return _TYPE_SUFFIX.sub("", written).strip()


def _same_type(written: str, annotation: str) -> bool:
    """Whether a documented type is the annotation, modules aside (`dt.datetime` is
    `datetime`, `typing.Any` is `Any`) and spaces aside."""

    def plain(text: str) -> str:
        return re.sub(r"\b(?:\w+\.)+(?=\w)", "", text).replace(" ", "")

    return plain(_bare_type(written)) == plain(annotation)


# ------------------------------------------------------------------ updating


@dataclass
class _Layout:
    """How the docstring indents entries (relative to its margin), and whether it writes
    parameter types."""

    entry: int
    continuation: int
    typed: bool


def _layout(doc: Docstring) -> _Layout:
    entries = [e for s in doc.sections for e in s.entries]
    if doc.style == GOOGLE:
        levels = [indentation(doc.lines[e.start]) for e in entries]
        entry = levels[0] if levels else 4
    else:
        entry = 0
    continuation = entry + 4
    for e in entries:
        for i in range(e.start + 1, e.end):
            if doc.lines[i].strip():
                continuation = indentation(doc.lines[i])
                break
        else:
            continue
        break
    typed = any(e.type for e in entries) if entries else doc.style != REST
    return _Layout(entry, continuation, typed)


def _safe(doc: Docstring, text: str) -> str:
    """Text that can stand in the literal as it is written: escaped, or left out when
    a raw string cannot hold it."""
    if doc.raw_string:
        return "" if "\\" in text or doc.quote[0] in text else text
    text = text.replace("\\", "\\\\")
    return text.replace(doc.quote, "\\" + "\\".join(doc.quote))


def _wrapped(text: str, first: str, indent: int, width: int) -> list[str]:
    """`first` + `text` filled to `width`, lines after the first indented by `indent`."""
    if not text:
        return [first.rstrip()]
    return textwrap.wrap(
        f"{first}{text}",
        max(width, 20),
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _new_parameter(
    doc: Docstring, layout: _Layout, parameter: Parameter, text: str, width: int
) -> list[str]:
    """A new entry for `parameter` in the docstring's style, at its indentation."""
    name, kind = parameter.name, _safe(doc, parameter.annotation)
    text = _safe(doc, text)
    pad = " " * layout.entry
    if doc.style == GOOGLE:
        head = f"{name} ({kind}): " if kind and layout.typed else f"{name}: "
        return _wrapped(text, pad + head, layout.continuation, width)
    if doc.style == NUMPY:
        head = [f"{name} : {kind}" if kind and layout.typed else name]
        if not text:
            return head
        return head + _wrapped(text, " " * layout.continuation, layout.continuation, width)
    bare = _stars(parameter)
    lines = _wrapped(text, f":param {bare}: ", layout.continuation, width)
    if kind and layout.typed:
        lines.append(f":type {bare}: {kind}")
    return lines


def _new_section(doc: Docstring, layout: _Layout, kind: str, items: list[str]) -> list[str]:
    """A new section's title lines in the docstring's style (rest has none)."""
    titles = {PARAMETERS: "Args", RETURNS: "Returns", YIELDS: "Yields", RAISES: "Raises"}
    if doc.style == GOOGLE:
        return [f"{titles[kind]}:", *items]
    if doc.style == NUMPY:
        title = "Parameters" if kind == PARAMETERS else titles[kind]
        return [title, "-" * len(title), *items]
    return items


def _value_lines(
    doc: Docstring, layout: _Layout, kind: str, type_: str, text: str, width: int
) -> list[str]:
    """The body of a new Returns or Yields section: [] when there is nothing to say."""
    type_, text = _safe(doc, type_), _safe(doc, text)
    if not (type_ or text):
        return []
    pad = " " * layout.entry if doc.style == GOOGLE else ""
    if doc.style == GOOGLE:
        first = pad + (f"{type_}: " if type_ and text else type_)
        indent = layout.entry + 4
        return _wrapped(text, first, indent, width) if text else [first]
    if doc.style == NUMPY:
        if not type_:
            return []
        return [type_, *(_wrapped(text, "    ", 4, width) if text else [])]
    field_name = "returns" if kind == RETURNS else "yields"
    lines = _wrapped(text, f":{field_name}: ", 4, width) if text else []
    if type_:
        lines.append(f":{'rtype' if kind == RETURNS else 'ytype'}: {type_}")
    return lines


def _exception_lines(doc: Docstring, layout: _Layout, exception: str, text: str, width: int):
    text = _safe(doc, text)
    if doc.style == GOOGLE:
        return _wrapped(text, " " * layout.entry + f"{exception}: ", layout.continuation, width)
    if doc.style == NUMPY:
        return [exception, *(_wrapped(text, "    ", 4, width) if text else [])]
    return _wrapped(text, f":raises {exception}: ", 4, width)


def _renamed(line: str, old: str, new: str) -> str:
    """An entry's first line with the parameter `old` (any stars kept) named `new`."""
    return re.sub(rf"(?<![\w*\\])((?:\\?\*)*){re.escape(old)}\b", rf"\g<1>{new}", line, count=1)


def _retyped(line: str, style: str, written: str, annotation: str) -> str:
    """An entry's first line with its type `written` (any `, optional` kept) now
    `annotation`: google's `x (int):`, numpy's `x : int`, rest's `:type x: int`."""
    bare = _bare_type(written)
    if style == GOOGLE:
        retyped = lambda m: f"({m[1].replace(bare, annotation, 1)})"  # noqa: E731
        return re.sub(r"\(([^)]*)\)", retyped, line, count=1)
    if style == REST and not line.startswith(":type"):
        return line  # `:param int x:`: left as written
    cut = line.index(":", 1 if style == REST else 0) + 1
    return line[:cut] + line[cut:].replace(bare, annotation, 1)


def update(
    doc: Docstring,
    facts: Facts,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    descriptions: Descriptions | None = None,
    *,
    width: int = 80,
) -> list[str] | None:
    """The docstring's lines with its sections brought in line with the code, or None
    when nothing needs changing. `descriptions` (by the model) describe new entries;
    without one they are written without a description (or, for Returns and Yields
    with no type either, not at all). `width`: columns for new lines, margin aside.

    Raises Unreadable where a change is needed in a list it cannot rewrite safely.
    """
    findings = {f.code for f in lint(doc, facts, node)} & UPDATED
    if not findings:
        return None
    found = descriptions or Descriptions()
    layout = _layout(doc)
    width -= len(doc.margin)
    lines = list(doc.lines)
    # Edits as (start, end, new lines) on the original line numbers, applied last first.
    edits: list[tuple[int, int, list[str]]] = []
    if findings & {"DS101", "DS102", "DS103", "DS104"}:
        edits += _parameter_edits(doc, facts, found, layout, width)
    values = (
        (RETURNS, facts.returns, "DS201", "DS202", found.returns),
        (YIELDS, facts.yields, "DS301", "DS302", found.yields),
    )
    # Sections removed first: a new one goes where the kept ones say.
    removed = [s for kind, *_, extra, _ in values if extra in findings for s in doc.of_kind(kind)]
    edits += [_removal(doc, section) for section in removed]
    for kind, fact, missing, _, text in values:
        if missing in findings:
            body = _value_lines(doc, layout, kind, fact or "", text, width)
            if body:
                new = _new_section(doc, layout, kind, body)
                edits.append(_insertion(doc, kind, new, removed))
    if "DS401" in findings and not is_stub(node):
        edits += _raises_edits(doc, facts, found, layout, width, removed)
    if not edits:
        return None
    spans = sorted((s, e) for s, e, _ in edits if e > s)
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise Unreadable("changes that overlap")
    # Last first, so that earlier line numbers hold; of two insertions at one line, the
    # one made first (the earlier kind) ends up first.
    for _, (start, end, new) in sorted(enumerate(edits), key=lambda e: (e[1][:2], e[0]))[::-1]:
        lines[start:end] = new
    return None if lines == doc.lines else lines


def _parameter_edits(
    doc: Docstring, facts: Facts, found: Descriptions, layout: _Layout, width: int
) -> list[tuple[int, int, list[str]]]:
    sections = doc.of_kind(PARAMETERS)
    if len(sections) > 1:
        raise Unreadable("parameters listed in more than one section")
    wanted = {_stars(p): p for p in facts.parameters}
    groups: dict[str, list[Entry]] = {}
    section = sections[0] if sections else None
    for entry in section.entries if section else ():
        if len(entry.names) != 1:
            raise Unreadable(f"docstring line {entry.start + 1}: several parameters in one entry")
        groups.setdefault(entry.names[0], []).append(entry)
    # A function that takes **kwargs may document the keywords it passes on: kept, after
    # the parameters.
    variadic = {_stars(p) for p in facts.parameters if p.name.startswith("*")}
    passed_on = (
        [n for n in groups if n not in wanted and n not in ("self", "cls")]
        if any(p.name.startswith("**") for p in facts.parameters)
        else []
    )
    removed = [n for n in groups if n not in wanted and n not in passed_on]
    added = [n for n in wanted if n not in groups and n not in variadic]
    # A rename is unambiguous when one entry is gone and one named parameter is new, or
    # when the one gone stood where a new parameter stands in the signature.
    renames = {removed[0]: added[0]} if len(removed) == 1 and len(added) == 1 else {}
    if len(removed) == 1 and not renames:
        place = list(groups).index(removed[0])
        order = list(wanted)
        if place < len(order) and order[place] in added:
            renames = {removed[0]: order[place]}
    blocks = []
    for name, parameter in wanted.items():
        old = next((o for o, n in renames.items() if n == name), name)
        if old not in groups:
            text = found.parameters.get(name, "")
            blocks.append(_new_parameter(doc, layout, parameter, text, width))
            continue
        block = []
        for entry in groups[old]:
            head = doc.lines[entry.start]
            if old != name:
                head = _renamed(head, old, name)
            typed = entry.type and parameter.annotation and layout.typed
            if typed and not _same_type(entry.type, parameter.annotation):
                head = _retyped(head, doc.style, entry.type, _safe(doc, parameter.annotation))
            block += [head, *doc.lines[entry.start + 1 : entry.end]]
        blocks.append(block)
    for name in passed_on:
        blocks.append([line for e in groups[name] for line in doc.lines[e.start : e.end]])
    if section is None:
        if not blocks:
            return []
        items = [line for block in blocks for line in block]
        return [_insertion(doc, PARAMETERS, _new_section(doc, layout, PARAMETERS, items))]
    if not blocks:
        return [_removal(doc, section)]
    # The entries' lines, in the signature's order, where the entries were; blank lines
    # between entries as the section had them.
    first = section.entries[0].start if section.entries else section.body
    spaced = any(
        not doc.lines[a.end].strip()
        for a, b in zip(section.entries, section.entries[1:], strict=False)
        if a.end < b.start
    )
    body: list[str] = []
    for block in blocks:
        body += ([""] if spaced and body else []) + block
    return [(first, max(section.end, first), body)]


def _raises_edits(
    doc: Docstring,
    facts: Facts,
    found: Descriptions,
    layout: _Layout,
    width: int,
    removed: Sequence[Section] = (),
) -> list[tuple[int, int, list[str]]]:
    sections = doc.of_kind(RAISES)
    documented = {_short(n) for s in sections for e in s.entries for n in e.names}
    new = [
        line
        for exception in facts.raises
        if _short(exception) not in documented
        for line in _exception_lines(doc, layout, exception, found.raises.get(exception, ""), width)
    ]
    if not new:
        return []
    if sections:
        end = sections[-1].end
        return [(end, end, new)]
    return [_insertion(doc, RAISES, _new_section(doc, layout, RAISES, new), removed)]


def _insertion(
    doc: Docstring, kind: str, new: list[str], removed: Sequence[Section] = ()
) -> tuple[int, int, list[str]]:
    """Insert a new section where its kind goes: before the first section of a later
    kind, after the last of an earlier one, else at the end of the text (sections being
    `removed` aside); set apart by blank lines (rest's fields join the other fields)."""
    kept = [s for s in doc.sections if all(s is not r for r in removed)]
    later = [s for s in kept if s.kind in SECTION_ORDER[SECTION_ORDER.index(kind) + 1 :]]
    earlier = [s for s in kept if s.kind in SECTION_ORDER[: SECTION_ORDER.index(kind)]]
    last_text = max((i for i, line in enumerate(doc.lines) if line.strip()), default=0)
    if later:
        at = later[0].start
        lead, tail = ([], []) if doc.style == REST else ([], [""])
    else:
        at = earlier[-1].end if earlier else last_text + 1
        fields = doc.style == REST and earlier
        lead, tail = ([], []) if fields else ([""], [])
    if at > last_text + 1:
        at = last_text + 1
    if at == len(doc.lines):  # the closing quotes follow the text on its line
        raise Unreadable("no line of its own for the closing quotes")
    return (at, at, [*lead, *new, *tail])


def _removal(doc: Docstring, section: Section) -> tuple[int, int, list[str]]:
    """Remove a section and the blank line before it."""
    start = section.start
    if start > 1 and not doc.lines[start - 1].strip():
        start -= 1
    return (start, section.end, [])


def codes_selected(code: str, select: Iterable[str], ignore: Iterable[str]) -> bool:
    """Whether `--select`/`--ignore` (codes or their prefixes) keep `code`."""
    select, ignore = list(select), list(ignore)
    if select and not any(code.startswith(s) for s in select):
        return False
    return not any(code.startswith(i) for i in ignore)


# ------------------------------------------------------------------ over a project's files


@dataclass(frozen=True)
class Stale:
    """A documented function whose docstring disagrees with its code."""

    source: Source
    function: Function
    doc: Docstring
    facts: Facts
    findings: tuple[Finding, ...]

    @property
    def needs_descriptions(self) -> bool:
        """Whether an update adds entries that a model could describe."""
        return any(f.code in ("DS101", "DS201", "DS301", "DS401") for f in self.findings)


def docstring_source(source: Source, function: Function) -> str | None:
    """The docstring literal of a function as the file writes it (newlines as `\\n`)."""
    node = docstring_node(function.node)
    return None if node is None else ast.get_source_segment(source.text, node)


def check_function(source: Source, function: Function) -> tuple[Docstring, Facts, list[Finding]]:
    """A documented function's docstring read, what its code says, and the findings.
    Raises Unreadable."""
    literal = docstring_source(source, function)
    if literal is None:
        raise Unreadable("no docstring")
    doc = read_docstring(literal)
    facts = facts_of(function.node, is_method=function.is_method)
    return doc, facts, lint(doc, facts, function.node)


def find_stale(
    sources: Iterable[Source], chosen: Callable[[Function], bool]
) -> tuple[list[Stale], list[SourceError]]:
    """The documented functions (those `chosen` says) whose docstrings an update would
    change, and the docstrings that cannot be read, as errors naming their line."""
    stale, unreadable = [], []
    for source in sources:
        for function in source.functions:
            if not function.docstring or not chosen(function):
                continue
            try:
                doc, facts, findings = check_function(source, function)
            except Unreadable as error:
                unreadable.append(SourceError(source.path, function.line, f"DS900 {error}"))
                continue
            kept = tuple(f for f in findings if f.code in UPDATED)
            if kept:
                stale.append(Stale(source, function, doc, facts, kept))
    return stale, unreadable


def describe(stale: Sequence[Stale], generator: Any) -> list[Descriptions | None]:
    """Descriptions by the model for the entries updates add: one styled docstring per
    function that gains one, read as `codemt docstring --style` reads them."""
    wanted = [i for i, s in enumerate(stale) if s.needs_descriptions]
    found: list[Descriptions | None] = [None] * len(stale)
    by_style: dict[str, list[int]] = {}
    for i in wanted:
        by_style.setdefault(stale[i].doc.style, []).append(i)
    for style, indices in by_style.items():
        records = [stale[i].function.record for i in indices]
        results = generator.translate_batch(records, "docstring", style, progress=True)
        for i, result in zip(indices, results, strict=True):
            found[i] = parse_descriptions(result.text, style)
    return found


def updated_literal(stale: Stale, descriptions: Descriptions | None, width: int) -> str | None:
    """The new docstring literal of a stale function, or None when its update changes
    nothing. Raises Unreadable where the change cannot be made safely."""
    lines = update(stale.doc, stale.facts, stale.function.node, descriptions, width=width)
    return None if lines is None else render(stale.doc, lines)


def lint_sources(
    sources: Iterable[Source], chosen: Callable[[Function], bool]
) -> list[tuple[Source, Function, Finding]]:
    """Every finding of the functions `chosen` says, in file and line order: DS001 for one
    without a docstring, DS900 for a docstring whose sections cannot be read."""
    found = []
    for source in sources:
        for function in sorted(source.functions, key=lambda f: f.line):
            if not chosen(function):
                continue
            if not function.docstring:
                found.append(
                    (source, function, Finding("DS001", f"{function.name} has no docstring"))
                )
                continue
            try:
                _, _, findings = check_function(source, function)
            except Unreadable as error:
                findings = [Finding("DS900", f"{error} (left as it is)")]
            found += [(source, function, f) for f in findings]
    return found


# ------------------------------------------------------------------ in an editor


def text_source(text: str, path: str = "<editor>") -> Source:
    """A document's text as a Source (an editor's or a request's): parsed, never read
    from disk; line breaks as the parser reads them. Raises SourceError (syntax)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Source(Path(path), text.encode("utf-8"), text, parse_text(path, text))


def stale_at(source: Source, line: int) -> Stale | None:
    """The function whose `def` is on `line`, if its docstring is stale (Unreadable
    where its sections cannot be read)."""
    for function in source.functions:
        if function.line == line and function.docstring:
            doc, facts, findings = check_function(source, function)
            kept = tuple(f for f in findings if f.code in UPDATED)
            if not kept:
                return None
            return Stale(source, function, doc, facts, kept)
    return None
