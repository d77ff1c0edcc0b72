"""Docstring templates: the sections of a style, built from the function itself.

A small model may get a docstring's structure wrong: miss a parameter, invent one, forget
what is raised. So the structure comes from the code: parameters (annotations, defaults)
from the signature; Returns, Yields and Raises from the body (`return` with a value,
`yield`, `raise X`). The model contributes the summary sentence and, where its own
docstring in the style describes a parameter, value or exception that really exists, the
description; whatever it leaves undescribed gets a placeholder to fill in, as the
template tools people use do (autoDocstring's `_description_`) when asked
(`placeholders`), and is otherwise left without a description. A description that only
restates the name ("val: The value of the value.") says nothing and is dropped.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from codemt.examples import name_words
from codemt.source.docstrings import GOOGLE, NUMPY, REST, SUMMARY
from codemt.source.extract import docstring_node
from codemt.write.apply import Paragraph

STYLES = (SUMMARY, GOOGLE, NUMPY, REST)
STRUCTURED = (GOOGLE, NUMPY, REST)
PLACEHOLDER = "_description_"
TYPE_PLACEHOLDER = "_type_"
# A default longer than this is left out of the description: it would not read as prose.
MAX_DEFAULT_CHARS = 40
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_ITERATORS = (
    "Iterator",
    "Iterable",
    "Generator",
    "AsyncIterator",
    "AsyncIterable",
    "AsyncGenerator",
)


@dataclass(frozen=True)
class Parameter:
    """A parameter as a docstring lists it: `*args` and `**kwargs` keep their stars."""

    name: str
    annotation: str = ""
    default: str | None = None


@dataclass(frozen=True)
class Facts:
    """What a function's docstring sections must say, read from its code.

    `returns` and `yields` are the type ("" when unknown), or None when the function
    returns (yields) nothing.
    """

    parameters: tuple[Parameter, ...] = ()
    returns: str | None = None
    yields: str | None = None
    raises: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether a docstring of this function has no section beyond its summary."""
        return not (self.parameters or self.raises) and self.returns is None and self.yields is None


@dataclass
class Descriptions:
    """Descriptions found in a generated docstring, by parameter name (no stars) and exception."""

    parameters: dict[str, str] = field(default_factory=dict)
    returns: str = ""
    yields: str = ""
    raises: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ facts from the code


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, not descending into nested functions or classes."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _text(node: ast.AST | None) -> str:
    return ast.unparse(node) if node is not None else ""


def _yielded_type(annotation: ast.expr | None) -> str:
    """`X` of `Iterator[X]`, `Generator[X, S, R]` and the like ("" when not written)."""
    if not isinstance(annotation, ast.Subscript):
        return ""
    if _text(annotation.value).split(".")[-1] not in _ITERATORS:
        return ""
    item = annotation.slice
    return _text(item.elts[0] if isinstance(item, ast.Tuple) and item.elts else item)


def _raised(node: ast.Raise) -> str | None:
    """The exception class a `raise` names, if it names one."""
    if node.exc is None:  # a bare `raise` re-raises what some caller documents
        return None
    name = _text(node.exc.func if isinstance(node.exc, ast.Call) else node.exc)
    # `raise error` raises a variable: only a class name (CapWords) says which exception.
    return name if re.fullmatch(r"(?:\w+\.)*[A-Z]\w*", name) else None


def facts_of(function: ast.FunctionDef | ast.AsyncFunctionDef, *, is_method: bool) -> Facts:
    """The sections a function's docstring needs, from its signature and body.

    For a method (`is_method`), the first parameter (self or cls) is not listed.
    """
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = list(zip(positional, [*defaults, *args.defaults], strict=True))
    if is_method:
        pairs = pairs[1:]
    if args.vararg:
        pairs.append((ast.arg(arg=f"*{args.vararg.arg}", annotation=args.vararg.annotation), None))
    pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
    if args.kwarg:
        pairs.append((ast.arg(arg=f"**{args.kwarg.arg}", annotation=args.kwarg.annotation), None))
    parameters = tuple(
        Parameter(a.arg, _text(a.annotation), None if d is None else _text(d)) for a, d in pairs
    )

    own = list(_own_nodes(function))
    generator = any(isinstance(n, ast.Yield | ast.YieldFrom) for n in own)
    returns_value = any(
        isinstance(n, ast.Return)
        and n.value is not None
        and not (isinstance(n.value, ast.Constant) and n.value.value is None)
        for n in own
    )
    annotation = _text(function.returns)
    # A property documents what it is in its summary, not in a Returns section.
    is_property = any(_text(d).endswith("property") for d in function.decorator_list)
    if generator:
        yields: str | None = _yielded_type(function.returns)
        returns = "" if returns_value else None
    else:
        yields = None
        declared = annotation not in ("", "None", "NoReturn", "Never")
        returns = annotation if declared else ("" if returns_value else None)
    if is_property:
        returns = None
    raises = dict.fromkeys(r for n in own if isinstance(n, ast.Raise) and (r := _raised(n)))
    return Facts(parameters, returns, yields, tuple(raises))


def is_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function's only statement (after its docstring) is `...`, `pass` or
    `raise NotImplementedError`."""
    statements = node.body[1:] if docstring_node(node) is not None else node.body
    if len(statements) != 1:
        return False
    statement = statements[0]
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Constant) and statement.value.value is Ellipsis
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


# ------------------------------------------------------------------ descriptions from the model

_GOOGLE_HEADER = re.compile(
    r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns?|Yields?|"
    r"Raises|Exceptions):"
)
_NUMPY_HEADER = re.compile(r"(Parameters|Other Parameters|Returns?|Yields?|Raises)")
_DASHES = re.compile(r"\s*-{3,}\s*")
_GOOGLE_ENTRY = re.compile(r"(\\?\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")
_REST_FIELD = re.compile(r":(\w+)((?:\s+[^:]+?)?)\s*:\s*(.*)")


def _section_key(header: str) -> str:
    """`Args`, `Parameters`, ... as one of: parameters, returns, yields, raises."""
    header = header.lower()
    if header.startswith(("return",)):
        return "returns"
    if header.startswith("yield"):
        return "yields"
    if header.startswith(("raise", "exception")):
        return "raises"
    return "parameters"


def _entries(lines: list[str]) -> list[tuple[str, str]]:
    """Split an indented section into entries: (first line, continuation joined)."""
    body = [line for line in lines if line.strip()]
    if not body:
        return []
    margin = min(len(line) - len(line.lstrip()) for line in body)
    entries: list[tuple[str, list[str]]] = []
    for line in body:
        if len(line) - len(line.lstrip()) == margin or not entries:
            entries.append((line.strip(), []))
        else:
            entries[-1][1].append(line.strip())
    return [(head, " ".join(rest)) for head, rest in entries]


def _name(text: str) -> str:
    return text.replace("\\", "").lstrip("*")


def _store(found: Descriptions, section: str, name: str, text: str) -> None:
    text = " ".join(text.split())
    if not text:
        return
    if section == "parameters":
        found.parameters.setdefault(_name(name), text)
    elif section == "raises":
        found.raises.setdefault(name, text)
    elif not getattr(found, section):
        setattr(found, section, text)


def _google_sections(text: str) -> Iterator[tuple[str, list[str]]]:
    section, lines = None, []
    for line in text.split("\n"):
        header = _GOOGLE_HEADER.fullmatch(line.strip())
        if header or (line.strip() and not line[:1].isspace()):
            if section:
                yield section, lines
            section, lines = (_section_key(header.group(1)) if header else None), []
        elif section:
            lines.append(line)
    if section:
        yield section, lines


def _parse_google(text: str, found: Descriptions) -> None:
    for section, lines in _google_sections(text):
        for head, rest in _entries(lines):
            entry = _GOOGLE_ENTRY.fullmatch(head)
            if section in ("parameters", "raises"):
                if entry:
                    _store(found, section, entry.group(1), f"{entry.group(2)} {rest}")
            else:  # `type: description` or the description alone
                description = entry.group(2) if entry and entry.group(2) else head
                _store(found, section, "", f"{description} {rest}")


def _parse_numpy(text: str, found: Descriptions) -> None:
    lines = text.split("\n")
    section = None
    entries: list[str] = []
    for i, line in enumerate(lines):
        if _DASHES.fullmatch(line):
            continue
        if i + 1 < len(lines) and _DASHES.fullmatch(lines[i + 1]):  # a section's title
            if section:
                _numpy_entries(section, entries, found)
            header = _NUMPY_HEADER.fullmatch(line.strip())
            section = _section_key(header.group(1)) if header else None
            entries = []
        elif section:
            entries.append(line)
    if section:
        _numpy_entries(section, entries, found)


def _numpy_entries(section: str, lines: list[str], found: Descriptions) -> None:
    for head, description in _entries(lines):
        name = head.split(":")[0].strip()
        _store(found, section, name, description)


def _parse_rest(text: str, found: Descriptions) -> None:
    for head, rest in _entries([line for line in text.split("\n") if line.strip()]):
        entry = _REST_FIELD.fullmatch(head)
        if not entry:
            continue
        kind, target, description = entry.group(1), entry.group(2).split(), entry.group(3)
        description = f"{description} {rest}"
        if kind in ("param", "parameter", "arg", "argument", "key", "keyword") and target:
            _store(found, "parameters", target[-1], description)
        elif kind in ("raises", "raise", "except", "exception") and target:
            _store(found, "raises", target[-1], description)
        elif kind in ("returns", "return"):
            _store(found, "returns", "", description)
        elif kind in ("yields", "yield"):
            _store(found, "yields", "", description)


_PARSERS = {GOOGLE: _parse_google, NUMPY: _parse_numpy, REST: _parse_rest}


def parse_descriptions(text: str, style: str) -> Descriptions:
    """The descriptions a generated docstring in `style` gives; whatever it garbles, and
    whatever only restates the name it describes, is left out."""
    found = Descriptions()
    _PARSERS[style](text, found)
    found.parameters = {n: t for n, t in found.parameters.items() if informative(n, t)}
    found.raises = {n: t for n, t in found.raises.items() if informative(n, t)}
    found.returns = found.returns if informative("", found.returns) else ""
    found.yields = found.yields if informative("", found.yields) else ""
    return found


# Words that say nothing about a parameter by themselves.
_EMPTY_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "for",
        "in",
        "on",
        "is",
        "be",
        "it",
        "its",
        "this",
        "that",
        "value",
        "values",
        "object",
        "objects",
        "param",
        "parameter",
        "argument",
        "arg",
        "given",
        "returns",
        "return",
        "yields",
        "result",
    ]
)


def informative(name: str, text: str) -> bool:
    """Whether a description says more than the name it describes: some word that is
    neither a filler nor (a prefix or extension of) a word of the name."""
    named = set(name_words(name).split())
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _EMPTY_WORDS:
            continue
        if any(word.startswith(n) or n.startswith(word) for n in named if len(n) > 1):
            continue
        return True
    return False


# ------------------------------------------------------------------ rendering


def _describe(text: str, default: str | None = None, placeholder: str = "") -> str:
    text = text or placeholder
    if default is not None and len(default) <= MAX_DEFAULT_CHARS and "default" not in text.lower():
        stop = "" if not text or text.endswith((".", "!", "?")) else "."
        text = f"{text}{stop} Defaults to {default}.".strip()
    return text


def _entry(head: str, text: str) -> str:
    return f"{head}: {text}" if text else f"{head}:"


def _google(facts: Facts, found: Descriptions, mark: str) -> list[Paragraph]:
    out: list[Paragraph] = []
    if facts.parameters:
        out += [Paragraph(""), Paragraph("Args:")]
        for p in facts.parameters:
            kind = ", ".join(
                filter(None, [p.annotation, "optional" if p.default is not None else ""])
            )
            name = f"{p.name} ({kind})" if kind else p.name
            text = _describe(found.parameters.get(_name(p.name), ""), p.default, mark)
            out.append(Paragraph(_entry(name, text), indent=4, hang=4))
    for title, kind, text in (
        ("Returns:", facts.returns, found.returns),
        ("Yields:", facts.yields, found.yields),
    ):
        text = _describe(text, None, mark)
        if kind is not None and (kind or text):
            line = _entry(kind, text) if kind and text else kind or text
            out += [Paragraph(""), Paragraph(title), Paragraph(line, indent=4, hang=4)]
    if facts.raises:
        out += [Paragraph(""), Paragraph("Raises:")]
        out += [
            Paragraph(_entry(e, _describe(found.raises.get(e, ""), None, mark)), indent=4, hang=4)
            for e in facts.raises
        ]
    return out


def _numpy(facts: Facts, found: Descriptions, mark: str) -> list[Paragraph]:
    def section(title: str) -> list[Paragraph]:
        return [Paragraph(""), Paragraph(title), Paragraph("-" * len(title))]

    def described(text: str) -> list[Paragraph]:
        return [Paragraph(text, indent=4)] if text else []

    out: list[Paragraph] = []
    if facts.parameters:
        out += section("Parameters")
        for p in facts.parameters:
            kind = ", ".join(
                filter(
                    None, [p.annotation, f"default {p.default}" if p.default is not None else ""]
                )
            )
            out.append(Paragraph(f"{p.name} : {kind}" if kind else p.name, hang=4))
            out += described(_describe(found.parameters.get(_name(p.name), ""), None, mark))
    for title, kind, text in (
        ("Returns", facts.returns, found.returns),
        ("Yields", facts.yields, found.yields),
    ):
        # numpy's entry is a type: without one (nor a placeholder for it) there is none.
        kind = kind or (TYPE_PLACEHOLDER if mark else "") if kind is not None else None
        if kind:
            out += section(title)
            out += [Paragraph(kind, hang=4), *described(_describe(text, None, mark))]
    if facts.raises:
        out += section("Raises")
        for e in facts.raises:
            out += [Paragraph(e), *described(_describe(found.raises.get(e, ""), None, mark))]
    return out


def _rest(facts: Facts, found: Descriptions, mark: str) -> list[Paragraph]:
    fields: list[Paragraph] = []
    for p in facts.parameters:
        text = _describe(found.parameters.get(_name(p.name), ""), p.default, mark)
        fields.append(Paragraph(_entry(f":param {_name(p.name)}", text), hang=4))
        if p.annotation:
            fields.append(Paragraph(f":type {_name(p.name)}: {p.annotation}", hang=4))
    for kind, text, name, type_field in (
        (facts.returns, found.returns, ":returns", ":rtype"),
        (facts.yields, found.yields, ":yields", ":ytype"),
    ):
        text = _describe(text, None, mark)
        if kind is not None and text:
            fields.append(Paragraph(_entry(name, text), hang=4))
        if kind:
            fields.append(Paragraph(f"{type_field}: {kind}", hang=4))
    for e in facts.raises:
        text = _describe(found.raises.get(e, ""), None, mark)
        fields.append(Paragraph(_entry(f":raises {e}", text), hang=4))
    return [Paragraph(""), *fields] if fields else []


_SECTIONS = {GOOGLE: _google, NUMPY: _numpy, REST: _rest}


def build_docstring(
    summary: str,
    facts: Facts,
    style: str,
    descriptions: Descriptions | None = None,
    *,
    placeholders: bool = False,
) -> list[Paragraph]:
    """A docstring in `style`: the summary, then the sections `facts` call for; what no
    description covers is left undescribed, or marked `_description_` (`placeholders`)."""
    if style not in STYLES:
        raise ValueError(f"unknown docstring style {style!r}; choose one of {', '.join(STYLES)}")
    paragraphs = [Paragraph(summary)]
    if style == SUMMARY:
        return paragraphs
    mark = PLACEHOLDER if placeholders else ""
    return paragraphs + _SECTIONS[style](facts, descriptions or Descriptions(), mark)


def docstring_text(paragraphs: list[Paragraph]) -> str:
    """A built docstring as plain text (no quotes, no wrapping): what `translate` returns."""
    return "\n".join(" " * p.indent + p.text if p.text else "" for p in paragraphs)
