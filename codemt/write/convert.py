"""Docstrings converted between the google, numpy and rest (Sphinx) styles, word for word.

`codemt docstring PATH --convert-style numpy` reads each sectioned docstring
(`codemt.source.sections`), takes from it the free text, the parameters, the values returned or
yielded and the exceptions, each with its type and description lines, and writes them in
the other style: the summary and free text stay as they were, descriptions keep their
words and their line breaks (only their indentation changes), sections the style does
not list (Examples, Notes, ...) keep their title and body. A docstring that cannot be
read is left alone and reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from codemt.source.docstrings import GOOGLE, NUMPY, REST
from codemt.source.sections import (
    OTHER,
    PARAMETERS,
    RAISES,
    RETURNS,
    YIELDS,
    Docstring,
    Section,
    Unreadable,
    indentation,
    read_docstring,
    render,
)
from codemt.write.apply import Function, Source, SourceError
from codemt.write.templates import Facts, facts_of
from codemt.write.upkeep import docstring_source

TEXT = "text"
_TITLES = {
    GOOGLE: {PARAMETERS: "Args", RETURNS: "Returns", YIELDS: "Yields", RAISES: "Raises"},
    NUMPY: {PARAMETERS: "Parameters", RETURNS: "Returns", YIELDS: "Yields", RAISES: "Raises"},
}
# A google Returns line `int: The sum.` names a type: a dotted name, maybe subscripted or
# a union, without spaces inside.
_TYPE_FIRST = re.compile(r"([\w.]+(?:\[[^\s:]*\])?(?:\s*\|\s*[\w.]+(?:\[[^\s:]*\])?)*)\s*:\s+(.*)")


@dataclass
class Item:
    """A documented parameter, exception or value: its name as the signature writes it
    (stars kept; "" for a value), its type ("" when none) and its description lines."""

    name: str = ""
    type: str = ""
    text: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A run of the docstring: free text (TEXT: `lines`), a section the styles share
    (`items`), or another section (OTHER: `title` and body `lines`)."""

    kind: str
    title: str = ""
    items: list[Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _dedent(lines: list[str]) -> list[str]:
    filled = [indentation(line) for line in lines if line.strip()]
    margin = min(filled, default=0)
    return [line[margin:] if line.strip() else "" for line in lines]


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _described(first: str, rest: list[str]) -> list[str]:
    return _trim(([first.strip()] if first and first.strip() else []) + _dedent(rest))


def _items(doc: Docstring, section: Section, stars: dict[str, str]) -> list[Item]:
    lines = doc.lines
    if doc.style == REST:
        return _rest_items(doc, section, stars)
    items = []
    if section.kind in (PARAMETERS, RAISES):
        for entry in section.entries:
            name = ", ".join(stars.get(n, n) for n in entry.names)
            rest = lines[entry.start + 1 : entry.end]
            items.append(Item(name, entry.type, _described(entry.text, rest)))
        return items
    # A value: google's lines, or numpy's entries (a type, or `name : type`).
    body = lines[section.body : section.end]
    if doc.style == GOOGLE:
        text = _described(section.inline, body) if section.inline else _trim(_dedent(body))
        typed = _TYPE_FIRST.fullmatch(text[0]) if text else None
        if typed:
            return [Item("", typed.group(1), [typed.group(2), *text[1:]])]
        return [Item("", "", text)]
    for entry in _entries_at_zero(body):
        head, rest = entry[0].strip(), entry[1:]
        name, _, kind = head.rpartition(" : ") if " : " in head else ("", "", head)
        items.append(Item(name.strip(), kind.strip(), _trim(_dedent(rest))))
    return items


def _entries_at_zero(lines: list[str]) -> list[list[str]]:
    entries: list[list[str]] = []
    for line in lines:
        if line.strip() and indentation(line) == 0:
            entries.append([line])
        elif entries:
            entries[-1].append(line)
    return entries


def _rest_items(doc: Docstring, section: Section, stars: dict[str, str]) -> list[Item]:
    items: dict[str, Item] = {}
    order: list[str] = []
    for entry in section.entries:
        first = entry.text
        rest = doc.lines[entry.start + 1 : entry.end]
        key = entry.names[0] if entry.names else f"#{entry.start}"
        if key not in items:
            name = stars.get(key, key) if section.kind == PARAMETERS else key
            items[key] = Item("" if section.kind in (RETURNS, YIELDS) else name)
            order.append(key)
        item = items[key]
        if entry.field in ("type", "rtype", "ytype"):
            item.type = first.strip()
        else:
            item.type = item.type or entry.type
            item.text = _described(first, rest)
    if section.kind in (RETURNS, YIELDS):  # `:returns:` and `:rtype:` are one value
        merged = Item("", " ".join(i.type for i in items.values() if i.type))
        merged.text = [line for i in items.values() for line in i.text]
        return [merged]
    return [items[k] for k in order]


def blocks_of(doc: Docstring, facts: Facts) -> list[Block]:
    """The docstring as blocks, in its order (the summary and free text as TEXT)."""
    stars = {p.name.lstrip("*"): p.name for p in facts.parameters}
    blocks: list[Block] = []
    at = 0
    for section in sorted(doc.sections, key=lambda s: s.start):
        if section.start > at:
            blocks.append(Block(TEXT, lines=doc.lines[at : section.start]))
        if section.kind == OTHER and section.entries:  # rest's other fields: text
            blocks.append(Block(TEXT, lines=doc.lines[section.start : section.end]))
        elif section.kind == OTHER:
            title = doc.lines[section.start].strip().rstrip(":")
            body = doc.lines[section.body : section.end]
            blocks.append(Block(OTHER, title=title, lines=_trim(_dedent(body))))
        else:
            blocks.append(Block(section.kind, items=_items(doc, section, stars)))
        at = section.end
    blocks.append(Block(TEXT, lines=doc.lines[at:]))
    return [b for b in blocks if b.kind != TEXT or any(line.strip() for line in b.lines)]


def _google_block(block: Block) -> list[str]:
    if block.kind == OTHER:
        return [f"{block.title}:", *(f"    {line}" if line else "" for line in block.lines)]
    lines = [f"{_TITLES[GOOGLE][block.kind]}:"]
    for item in block.items:
        if block.kind in (RETURNS, YIELDS):
            head = f"{item.type}: " if item.type and item.text else item.type
        elif block.kind == PARAMETERS:
            head = f"{item.name} ({item.type}): " if item.type else f"{item.name}: "
        else:
            head = f"{item.name}: "
        first, rest = (item.text[0], item.text[1:]) if item.text else ("", [])
        lines.append(f"    {head}{first}".rstrip())
        lines += [f"        {line}" if line else "" for line in rest]
    return lines


def _numpy_block(block: Block) -> list[str]:
    title = block.title if block.kind == OTHER else _TITLES[NUMPY][block.kind]
    lines = [title, "-" * len(title)]
    if block.kind == OTHER:
        return lines + block.lines
    for item in block.items:
        if block.kind in (RETURNS, YIELDS) and not item.type:
            lines += item.text  # no type to head the entry: the description alone
            continue
        if block.kind == RAISES or not item.type:
            head = item.name or item.type
        else:
            head = f"{item.name} : {item.type}" if item.name else item.type
        lines.append(head)
        lines += [f"    {line}" if line else "" for line in item.text]
    return lines


def _rest_block(block: Block) -> list[str]:
    if block.kind == OTHER:
        return [f"{block.title}:", *(f"    {line}" if line else "" for line in block.lines)]
    lines: list[str] = []
    for item in block.items:
        first, rest = (item.text[0], item.text[1:]) if item.text else ("", [])
        more = [f"    {line}" if line else "" for line in rest]
        if block.kind == PARAMETERS:
            bare = item.name.lstrip("*")
            lines += [f":param {bare}: {first}".rstrip(), *more]
            if item.type:
                lines.append(f":type {bare}: {item.type}")
        elif block.kind == RAISES:
            lines += [f":raises {item.name}: {first}".rstrip(), *more]
        else:
            name = "returns" if block.kind == RETURNS else "yields"
            if item.text:
                lines += [f":{name}: {first}".rstrip(), *more]
            if item.type:
                lines.append(f":{'rtype' if block.kind == RETURNS else 'ytype'}: {item.type}")
    return lines


_WRITERS = {GOOGLE: _google_block, NUMPY: _numpy_block, REST: _rest_block}


def convert(doc: Docstring, style: str, facts: Facts) -> list[str] | None:
    """The docstring's lines in `style`, or None when it is in that style already or has
    no sections to convert. Raises Unreadable (a docstring `codemt.source.sections` cannot read)."""
    if style not in _WRITERS:
        raise ValueError(f"cannot convert to {style!r}; choose one of google, numpy, rest")
    if doc.style == style or doc.style not in _WRITERS or not doc.sections:
        return None
    if len(doc.raw) < 2:
        raise Unreadable("no line of its own for the closing quotes")
    lines: list[str] = []
    previous = ""
    for block in blocks_of(doc, facts):
        if block.kind == TEXT:  # the first keeps its leading lines: the summary's place
            new = _trim(block.lines) if lines else _trim(["x", *block.lines])[1:]
        else:
            new = _WRITERS[style](block)
        # rest's fields follow one another; everything else is set apart by a blank line.
        fields = style == REST and block.kind not in (TEXT, OTHER) and previous == "field"
        if lines and not fields:
            lines.append("")
        lines += new
        previous = "field" if style == REST and block.kind not in (TEXT, OTHER) else block.kind
    return [*lines, ""]


def conversions(
    sources: Iterable[Source], chosen: Callable[[Function], bool], style: str
) -> tuple[list[tuple[Source, Function, str, str]], list[SourceError]]:
    """Per documented function (those `chosen` says) whose docstring has sections in
    another style: (source, function, its literal, the converted literal); and the
    docstrings that cannot be read, as errors naming their line."""
    found, unreadable = [], []
    for source in sources:
        for function in source.functions:
            if not function.docstring or not chosen(function):
                continue
            literal = docstring_source(source, function)
            if literal is None:
                continue
            try:
                doc = read_docstring(literal)
                lines = convert(doc, style, facts_of(function.node, is_method=function.is_method))
            except Unreadable as error:
                unreadable.append(SourceError(source.path, function.line, f"DS900 {error}"))
                continue
            if lines is not None:
                found.append((source, function, literal, render(doc, lines)))
    return found, unreadable
