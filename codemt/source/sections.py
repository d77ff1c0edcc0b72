"""Docstring sections as a person wrote them, read from the literal's own lines.

A docstring in the google, numpy or rest (Sphinx) style lists the parameters, the value
returned or yielded and the exceptions raised. `read_docstring` finds those sections and
their entries as spans of the docstring literal's source lines, keeping each line's text
and place, so that an update (`codemt.write.upkeep`) can replace an entry or a section and
`render` gives back every other line byte for byte. A docstring whose sections cannot be
read raises `Unreadable` (tab indentation, an entry that is no entry), and is left alone.

Why not `docstring_parser`: it parses into descriptions and renders its own layout, so
an update through it would reflow what a person wrote (docs/editing.md measures it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from codemt.source.docstrings import GOOGLE, NUMPY, REST, detect_style

# The kinds of sections, and the order a new one takes among them.
PARAMETERS, RETURNS, YIELDS, RAISES, OTHER = "parameters", "returns", "yields", "raises", "other"
SECTION_ORDER = (PARAMETERS, RETURNS, YIELDS, RAISES)

_GOOGLE_TITLES = {
    "args": PARAMETERS,
    "arguments": PARAMETERS,
    "parameters": PARAMETERS,
    "params": PARAMETERS,
    "keyword args": PARAMETERS,
    "keyword arguments": PARAMETERS,
    "other parameters": PARAMETERS,
    "returns": RETURNS,
    "return": RETURNS,
    "yields": YIELDS,
    "yield": YIELDS,
    "raises": RAISES,
    "exceptions": RAISES,
}
_GOOGLE_HEADER = re.compile(r"([A-Z][A-Za-z ]*):(\s+\S.*)?")
_GOOGLE_PARAMETER = re.compile(r"((?:\\?\*){0,2}\w+)\s*(?:\(([^)]*)\))?\s*:(?P<text>\s.*)?")
_GOOGLE_EXCEPTION = re.compile(r"([A-Za-z_][\w.]*)\s*(?::(?P<text>\s.*)?)?")
_NUMPY_TITLES = {
    "parameters": PARAMETERS,
    "other parameters": PARAMETERS,
    "returns": RETURNS,
    "yields": YIELDS,
    "raises": RAISES,
}
# Titles of free-text blocks that rest docstrings borrow from google's.
_TEXT_TITLES = frozenset(
    {"example", "examples", "note", "notes", "warning", "warnings", "see also", "references"}
)
_DASHES = re.compile(r"-{3,}\s*")
_NUMPY_PARAMETER = re.compile(r"((?:\\?\*){0,2}\w+(?:\s*,\s*(?:\\?\*){0,2}\w+)*)\s*(?::\s*(.*))?")
_NUMPY_EXCEPTION = re.compile(r"([A-Za-z_][\w.]*)\s*")
_REST_FIELD = re.compile(r":(\w+)((?:\s+[^:\s]+)*)\s*:(\s.*)?")
_REST_KINDS = {
    "param": PARAMETERS,
    "parameter": PARAMETERS,
    "arg": PARAMETERS,
    "argument": PARAMETERS,
    "key": PARAMETERS,
    "keyword": PARAMETERS,
    "type": PARAMETERS,
    "returns": RETURNS,
    "return": RETURNS,
    "rtype": RETURNS,
    "yields": YIELDS,
    "yield": YIELDS,
    "ytype": YIELDS,
    "raises": RAISES,
    "raise": RAISES,
    "except": RAISES,
    "exception": RAISES,
}


class Unreadable(ValueError):
    """Docstring sections that cannot be read; the message says where and why."""


@dataclass
class Entry:
    """One entry of a section: lines [start, end) of the docstring. `names`: the
    parameters it documents, without stars (numpy may list several), or the exception;
    `type`: the type it writes ("" when none); `field`: rest's field name; `text`: what
    its first line says after them (the start of its description)."""

    names: tuple[str, ...]
    start: int
    end: int
    type: str = ""
    field: str = ""
    text: str = ""


@dataclass
class Section:
    """A section: its title line at `start` (rest: its first field), its body from `body`,
    lines [start, end) without the blank lines after it; `inline`: text on the title's
    line (google's `Returns: The sum.`)."""

    kind: str
    start: int
    body: int
    end: int
    entries: list[Entry] = field(default_factory=list)
    inline: str = ""


@dataclass
class Docstring:
    """A docstring literal's source, split for editing.

    `lines[0]` follows the opening quotes; the others lost `margin`, the indentation
    they share (kept in `raw` as written). The closing quotes end the last line.
    """

    prefix: str  # string prefix and opening quotes: `r"""`
    quote: str  # the quotes: `"""`
    raw: list[str]
    lines: list[str]
    margin: str
    style: str
    sections: list[Section]

    def of_kind(self, kind: str) -> list[Section]:
        return [s for s in self.sections if s.kind == kind]

    @property
    def raw_string(self) -> bool:
        return "r" in self.prefix.lower()


# ------------------------------------------------------------------ reading


def indentation(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def read_docstring(literal: str, style: str | None = None) -> Docstring:
    """Split a docstring literal's source (`\"\"\"...\"\"\"`, newlines as `\\n`) into lines
    and sections in `style` (detected from its text when None). Raises Unreadable."""
    match = re.match(r"([rRuU]?)('''|\"\"\"|'|\")", literal)
    if not match or len(literal) < len(match[0]) + len(match[2]) or not literal.endswith(match[2]):
        raise Unreadable("not a plain string literal")
    prefix, quote = match.group(0), match.group(2)
    inner = literal[len(prefix) : len(literal) - len(quote)]
    raw = inner.split("\n")
    leads = [line[: len(line) - len(line.lstrip())] for line in raw[1:] if line.strip()]
    margin = os.path.commonprefix(leads) if leads else raw[-1] if len(raw) > 1 else ""
    if any("\t" in lead[len(margin) :] for lead in leads):
        raise Unreadable("tab indentation inside the docstring")
    lines = [raw[0]] + [line[len(margin) :] if line.strip() else "" for line in raw[1:]]
    if style is None:
        style = detect_style(inspect_clean(lines))
        # Fields beside an `Examples:` block: rest, whose examples google's title matches.
        if (
            style == GOOGLE
            and not any(
                _GOOGLE_TITLES.get(m.group(1).lower())
                for line in lines[1:]
                if (m := _GOOGLE_HEADER.fullmatch(line))
            )
            and any(_REST_FIELD.fullmatch(line.strip()) for line in lines[1:])
        ):
            style = REST
    readers = {GOOGLE: _google_sections, NUMPY: _numpy_sections, REST: _rest_sections}
    sections = readers[style](lines) if style in readers else []
    return Docstring(prefix, quote, raw, lines, margin, style, sections)


def inspect_clean(lines: list[str]) -> str:
    """The text of split lines as `inspect.cleandoc` gives a docstring's."""
    return "\n".join(lines).strip("\n")


def _block_end(lines: list[str], start: int, stop: int, indent: int) -> int:
    """The end of the lines from `start` that are blank or indented more than `indent`,
    before `stop`, without trailing blank lines."""
    end = start
    for i in range(start, stop):
        if lines[i].strip() and indentation(lines[i]) <= indent:
            break
        if lines[i].strip():
            end = i + 1
    return end


def _entries(
    lines: list[str], start: int, end: int, head: re.Pattern[str], kind: str
) -> list[Entry]:
    """The entries of a section body: a line at the body's least indentation begins one."""
    filled = [i for i in range(start, end) if lines[i].strip()]
    if not filled:
        return []
    level = min(indentation(lines[i]) for i in filled)
    entries: list[Entry] = []
    for i in filled:
        if indentation(lines[i]) > level:
            if not entries:
                raise Unreadable(f"docstring line {i + 1}: indented more than the entries after it")
            entries[-1].end = i + 1  # a continuation line
            continue
        match = head.fullmatch(lines[i].strip())
        if not match:
            raise Unreadable(f"docstring line {i + 1}: {lines[i].strip()!r} is no {kind} entry")
        names = tuple(bare_name(n) for n in match.group(1).split(","))
        kind_type = (match.group(2) or "").strip() if kind == PARAMETERS else ""
        text = (match.groupdict().get("text") or "").strip()
        entries.append(Entry(names, i, i + 1, kind_type, text=text))
    return entries


def bare_name(text: str) -> str:
    return text.strip().replace("\\", "").lstrip("*")


def _google_sections(lines: list[str]) -> list[Section]:
    sections = []
    i = 1
    while i < len(lines):
        header = _GOOGLE_HEADER.fullmatch(lines[i])
        kind = _GOOGLE_TITLES.get(header.group(1).lower()) if header else None
        if header is None or kind is None and header.group(2):
            i += 1
            continue
        end = _block_end(lines, i + 1, len(lines), 0)
        inline = (header.group(2) or "").strip()
        section = Section(kind or OTHER, i, i + 1, max(end, i + 1), inline=inline)
        if header.group(2) and kind not in (RETURNS, YIELDS):
            raise Unreadable(f"docstring line {i + 1}: {lines[i]!r} has its entries on its line")
        if kind == PARAMETERS:
            section.entries = _entries(lines, i + 1, end, _GOOGLE_PARAMETER, PARAMETERS)
        elif kind == RAISES:
            section.entries = _entries(lines, i + 1, end, _GOOGLE_EXCEPTION, RAISES)
        sections.append(section)
        i = section.end
    return sections


def _numpy_sections(lines: list[str]) -> list[Section]:
    titles = [
        i
        for i in range(1, len(lines) - 1)
        if lines[i].strip() and indentation(lines[i]) == 0 and _DASHES.fullmatch(lines[i + 1])
    ]
    sections = []
    for n, i in enumerate(titles):
        stop = titles[n + 1] if n + 1 < len(titles) else len(lines)
        end = i + 2
        for j in range(i + 2, stop):
            if lines[j].strip():
                end = j + 1
        kind = _NUMPY_TITLES.get(lines[i].strip().lower(), OTHER)
        section = Section(kind, i, i + 2, end)
        if kind == PARAMETERS:
            section.entries = _entries(lines, i + 2, end, _NUMPY_PARAMETER, PARAMETERS)
        elif kind == RAISES:
            section.entries = _entries(lines, i + 2, end, _NUMPY_EXCEPTION, RAISES)
        sections.append(section)
    return sections


def _rest_sections(lines: list[str]) -> list[Section]:
    """rest's fields, each an entry; a run of fields of one kind is a section."""
    entries: list[tuple[str, Entry]] = []
    for i, line in enumerate(lines):
        if not line.startswith(":"):
            if entries and line.strip() and indentation(line) > 0 and entries[-1][1].end == i:
                entries[-1][1].end = i + 1  # a continuation line
            continue
        match = _REST_FIELD.fullmatch(line.strip())
        if not match:
            continue
        name, target = match.group(1).lower(), match.group(2).split()
        kind = _REST_KINDS.get(name, OTHER)
        kind_type = ""
        if name in ("param", "parameter", "arg", "argument", "key", "keyword") and len(target) > 1:
            kind_type = " ".join(target[:-1])  # `:param int x:`
        if name == "type":
            kind_type = (match.group(3) or "").strip()
        names = (bare_name(target[-1]),) if target else ()
        text = (match.group(3) or "").strip()
        entries.append((kind, Entry(names, i, i + 1, kind_type, name, text)))
    sections: list[Section] = []
    for kind, entry in entries:
        last = sections[-1] if sections else None
        if last and last.kind == kind and not any(s.strip() for s in lines[last.end : entry.start]):
            last.end = entry.end
            last.entries.append(entry)
        else:
            sections.append(Section(kind, entry.start, entry.start, entry.end, [entry]))
    # Free-text blocks under a title (`Examples:` and an indented body) are sections too.
    for i, line in enumerate(lines[1:], 1):
        header = _GOOGLE_HEADER.fullmatch(line)
        if header and not header.group(2) and header.group(1).lower() in _TEXT_TITLES:
            end = _block_end(lines, i + 1, len(lines), 0)
            if end > i + 1 and not any(s.start <= i < s.end for s in sections):
                sections.append(Section(OTHER, i, i + 1, end))
    return sorted(sections, key=lambda s: s.start)


# ------------------------------------------------------------------ writing


def render(doc: Docstring, lines: Sequence[str], newline: str = "\n") -> str:
    """The literal's source for `lines`: each with the margin, as the lines were read;
    blank lines as the docstring writes its blank lines, the closing quotes' line as it
    was."""
    blanks = {line for line in doc.raw[1:-1] if not line.strip()}
    blank = blanks.pop() if len(blanks) == 1 else ""
    out = [lines[0]]
    for n, line in enumerate(lines[1:], 1):
        if n == len(lines) - 1 and not line.strip():
            out.append(doc.raw[-1])
        else:
            out.append(doc.margin + line if line.strip() else blank)
    return doc.prefix + newline.join(out) + doc.quote
