"""`codemt docstring`: write the missing docstrings of a project into its files.

    codemt docstring src/                     # a diff of what would be written
    codemt docstring src/ --write             # written in place, safely
    codemt docstring src/ --check             # CI: exit 1 if a function has no docstring

The pipeline: find the Python files under the paths (skipping what .gitignore ignores,
virtual environments, build and hidden folders), find their functions without a
docstring, generate every docstring in one batch over all files, build each in the
chosen style (`codemt.write.templates`), insert them with libcst and verify and write each file
(`codemt.write.apply`). A file that cannot be read or edited is reported and left untouched.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from codemt.generation import Translation
from codemt.source.docstrings import SUMMARY, detect_style, prose_summary
from codemt.source.files import file_identity, find_files
from codemt.source.sections import Unreadable
from codemt.write.apply import (
    DEFAULT_LINE_LENGTH,
    Change,
    Function,
    FunctionEdit,
    Paragraph,
    Source,
    SourceError,
    docstring_edit,
    edit_functions,
    encode,
    literal_edit,
    parse_cst,
    read_source,
    show_or_write,
    verify_edit,
)
from codemt.write.classes import Klass, attributes_of, class_docstring, class_record, classes_of
from codemt.write.convert import conversions
from codemt.write.templates import (
    STRUCTURED,
    STYLES,
    build_docstring,
    facts_of,
    parse_descriptions,
)
from codemt.write.upkeep import (
    Stale,
    describe,
    docstring_source,
    find_stale,
    updated_literal,
)

AUTO = "auto"
MODES = ("diff", "check", "write")
# A project uses a structured style if at least this share of its docstrings do (its short
# docstrings are summaries whatever its convention, so a majority vote would miss it).
STRUCTURED_SHARE = 0.1


class Generator(Protocol):
    """What the docstring writer needs from a model: `Translator.translate_batch`."""

    def translate_batch(
        self,
        methods: Sequence[dict[str, Any]],
        target: str,
        style: str | None = None,
        **options: Any,
    ) -> list[Translation]: ...


@dataclass(frozen=True)
class DocstringSettings:
    """What `codemt docstring` documents, and how.

    Attributes:
        style: summary, google, numpy, rest, or auto (the style the files use most).
        line_length: docstrings are wrapped to this many columns.
        include, exclude: gitignore-style globs, matched against paths relative to the
            folder given; `include` applies to files found in folders only.
        min_lines: functions shorter than this (from `def` to the end) are skipped.
        public_only: skip private functions (`_name`, or nested in a function).
        overwrite: replace existing docstrings too.
        describe: in structured styles, also ask the model to describe parameters,
            return values and exceptions (a second generation pass).
        update: also bring existing docstrings' sections in line with the code
            (`codemt.write.upkeep`).
        placeholders: mark what no description covers `_description_` (else it is
            left undescribed).
        convert: rewrite existing sectioned docstrings in this style (google, numpy,
            rest), every word kept (`codemt.write.convert`).
        classes: document classes too (`codemt.write.classes`).
    """

    style: str = SUMMARY
    line_length: int = DEFAULT_LINE_LENGTH
    include: tuple[str, ...] = ("*.py",)
    exclude: tuple[str, ...] = ()
    min_lines: int = 0
    public_only: bool = False
    overwrite: bool = False
    describe: bool = True
    update: bool = False
    placeholders: bool = False
    convert: str | None = None
    classes: bool = False

    def __post_init__(self) -> None:
        if self.style not in (*STYLES, AUTO):
            raise ValueError(
                f"unknown style {self.style!r}; choose one of {', '.join(STYLES)}, auto"
            )
        if self.line_length < 20:
            raise ValueError(f"line_length must be at least 20, got {self.line_length}")
        if self.convert not in (None, *STRUCTURED):
            raise ValueError(f"cannot convert to {self.convert!r}; choose google, numpy or rest")
        if self.min_lines < 0:
            raise ValueError(f"min_lines must be 0 or more, got {self.min_lines}")


@dataclass
class Report:
    """What a run did: counts for the summary line, and the files it could not handle."""

    files: int = 0
    documented: int = 0
    already: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[SourceError] = field(default_factory=list)
    missing: list[tuple[str, Function]] = field(default_factory=list)  # for --check
    stale: list[Stale] = field(default_factory=list)  # for --check --update
    updated: int = 0
    converted: int = 0
    restyled: list[tuple[str, Function]] = field(default_factory=list)  # for --check
    classes: list[tuple[str, Klass]] = field(default_factory=list)  # classes without one
    # Docstrings that are a sibling's summary (`Translation.origin`): path, the function or
    # class, origin.
    borrowed: list[tuple[str, Function | Klass, str]] = field(default_factory=list)
    documented_classes: int = 0
    unreadable: list[SourceError] = field(default_factory=list)  # docstrings left alone
    style: str = SUMMARY  # the style written (auto resolved)
    t0: float = field(default_factory=time.perf_counter)

    def summary(self, mode: str) -> str:
        """One line: files, functions documented, skipped and why, errors, time."""
        verb = {"write": "documented", "diff": "to document", "check": "without a docstring"}
        count = len(self.missing) if mode == "check" else self.documented
        parts = [plural(self.files, "file"), f"{plural(count, 'function')} {verb[mode]}"]
        if mode != "check":
            parts[-1] += f" ({self.style} style)"
        stale = len(self.stale) if mode == "check" else self.updated
        if stale or self.stale:
            verb = {"write": "updated", "diff": "to update", "check": "out of date"}[mode]
            parts.append(f"{plural(stale, 'docstring')} {verb}")
        if self.classes:
            count = len(self.classes) if mode == "check" else self.documented_classes
            verb = {"write": "documented", "diff": "to document", "check": "without a docstring"}
            parts.append(f"{plural(count, 'class')} {verb[mode]}")
        if self.converted:
            verb = {"write": "converted", "diff": "to convert", "check": "in another style"}
            parts.append(f"{plural(self.converted, 'docstring')} {verb[mode]}")
        if self.unreadable:
            parts.append(f"{plural(len(self.unreadable), 'docstring')} not read")
        if self.already:
            parts.append(f"{self.already} already documented")
        parts += [f"{n} skipped: {why}" for why, n in sorted(self.skipped.items())]
        if self.errors:
            parts.append(f"{len(self.errors)} files not handled")
        return ", ".join(parts) + f"; {time.perf_counter() - self.t0:.1f} s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


# ------------------------------------------------------------------ finding files


def _inside_given(paths: Iterable[str | Path]) -> Callable[[Path], bool]:
    """Whether a file found under `paths` is, once its links are followed, one of the files
    named or inside one of the folders named: `--write` never writes through a link out of
    them."""
    folders, files = [], set()
    for given in map(Path, paths):
        (folders.append if given.is_dir() else files.add)(file_identity(given))

    def inside(path: Path) -> bool:
        real = file_identity(path)
        return real in files or any(real.is_relative_to(folder) for folder in folders)

    return inside


# ------------------------------------------------------------------ choosing functions


def project_style(sources: Iterable[Source]) -> str:
    """The docstring style a project uses: its most used structured style, else summary.

    A structured style (google, numpy, rest) wins when at least STRUCTURED_SHARE of the
    functions' docstrings use one; otherwise the project writes summaries.
    """
    styles = Counter(
        detect_style(f.docstring) for source in sources for f in source.functions if f.docstring
    )
    structured = Counter({s: styles[s] for s in STRUCTURED if styles[s]})
    total = sum(styles.values())
    if structured and structured.total() >= STRUCTURED_SHARE * total:
        return structured.most_common(1)[0][0]
    return SUMMARY


def skip_reason(function: Function, settings: DocstringSettings) -> str | None:
    """Why a function without a docstring is not documented, or None when it is."""
    if settings.public_only and not function.public:
        return "private"
    if function.lines < settings.min_lines:
        return f"under {settings.min_lines} lines"
    return None


@dataclass(frozen=True)
class Target:
    """A function to document, in the file it belongs to."""

    source: Source
    function: Function


def select(sources: Iterable[Source], settings: DocstringSettings, report: Report) -> list[Target]:
    """The functions to document, counting the others in the report."""
    targets = []
    for source in sources:
        for function in source.functions:
            if function.docstring and not settings.overwrite:
                report.already += 1
                continue
            reason = skip_reason(function, settings)
            if reason:
                report.skipped[reason] += 1
            else:
                targets.append(Target(source, function))
    return targets


# ------------------------------------------------------------------ writing docstrings


def generate(
    targets: Sequence[Target], style: str, generator: Generator, settings: DocstringSettings
) -> list[tuple[list[Paragraph] | None, str]]:
    """Every target's docstring, in `style` (None where the model wrote no summary), and its
    summary's origin (`Translation.origin`: "" unless a sibling's summary was taken).

    One `translate_batch` call writes all summaries (batched across files); in a
    structured style another writes the styled docstrings that descriptions are read from,
    for the functions that have sections.
    """
    records = [t.function.record for t in targets]
    summaries = generator.translate_batch(records, "docstring", SUMMARY, progress=True)
    facts = [facts_of(t.function.node, is_method=t.function.is_method) for t in targets]
    styled: dict[int, str] = {}
    if style in STRUCTURED and settings.describe:
        sectioned = [i for i, f in enumerate(facts) if not f.empty]
        results = generator.translate_batch(
            [records[i] for i in sectioned], "docstring", style, progress=True
        )
        styled = {i: r.text for i, r in zip(sectioned, results, strict=True)}
    docstrings: list[tuple[list[Paragraph] | None, str]] = []
    for i, result in enumerate(summaries):
        summary = prose_summary(result.text)
        if not summary:
            docstrings.append((None, ""))
            continue
        found = parse_descriptions(styled[i], style) if i in styled else None
        built = build_docstring(summary, facts[i], style, found, placeholders=settings.placeholders)
        docstrings.append((built, result.origin))
    return docstrings


def apply_docstrings(
    source: Source,
    docstrings: dict[int, list[Paragraph]],
    settings: DocstringSettings,
    updates: dict[int, FunctionEdit] | None = None,
    class_docstrings: dict[int, list[Paragraph]] | None = None,
) -> Change:
    """A file with these docstrings (by `Function.index`) inserted, these `updates` of
    docstrings made and these class docstrings (by `Klass.index`) inserted, verified; or
    a SourceError."""
    module = parse_cst(source)

    def written(paragraphs: list[Paragraph]) -> FunctionEdit:
        newline = module.default_newline
        return docstring_edit(paragraphs, line_length=settings.line_length, newline=newline)

    edits = {i: written(p) for i, p in docstrings.items()} | (updates or {})
    class_edits = {i: written(p) for i, p in (class_docstrings or {}).items()}
    try:
        edited = edit_functions(module, edits, class_edits)
    except ValueError as error:  # a docstring changed since it was read
        raise SourceError(source.path, 0, f"{error}; not written") from None
    new_data = encode(source.path, edited)
    verify_edit(source, new_data, edits, "docstring", classes=class_edits)
    return Change(source, new_data, edited.encoding)


def document(
    paths: Sequence[str | Path],
    settings: DocstringSettings,
    mode: str,
    load_generator: Callable[[], Generator],
) -> Report:
    """Run `codemt docstring` over paths: check, show a diff, or write (`mode`).

    `load_generator()` returns the model (anything with `translate_batch`); it is called
    only when there is something to document, and never in check mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    report = Report()
    sources = []
    for path in find_files(paths, include=settings.include, exclude=settings.exclude):
        report.files += 1
        try:
            sources.append(read_source(path))
        except SourceError as error:
            report.errors.append(error)
    if mode == "check":  # a check reports missing docstrings, whatever --overwrite says
        settings = replace(settings, overwrite=False)
    targets = select(sources, settings, report)
    style = project_style(sources) if settings.style == AUTO else settings.style
    report.style = style
    stale: list[Stale] = []
    if settings.update:
        stale, report.unreadable = find_stale(sources, lambda f: skip_reason(f, settings) is None)
    converted: dict[Path, dict[int, FunctionEdit]] = {}
    if settings.convert:
        found, unreadable = conversions(
            sources, lambda f: skip_reason(f, settings) is None, settings.convert
        )
        report.unreadable += unreadable
        for source, function, old, new in found:
            converted.setdefault(source.path, {})[function.index] = literal_edit(
                old, new, source.newline
            )
            report.restyled.append((source.path.as_posix(), function))
        report.converted = sum(len(c) for c in converted.values())  # in check mode
    if settings.classes:
        report.classes = [
            (source.path.as_posix(), klass)
            for source in sources
            for klass in classes_of(source)
            if not klass.docstring and (klass.public or not settings.public_only)
        ]
    if mode == "check":
        report.missing = [(t.source.path.as_posix(), t.function) for t in targets]
        report.stale = stale
        return report
    if not targets and not stale and not converted and not report.classes:
        return report

    wanted = bool(targets or report.classes)
    wanted = wanted or settings.describe and any(s.needs_descriptions for s in stale)
    generator = load_generator() if wanted else None
    docstrings = generate(targets, style, generator, settings) if targets else []
    by_file: dict[Path, dict[int, list[Paragraph]]] = {}
    borrowed: list[tuple[Path, Function | Klass, str]] = []
    for target, (docstring, origin) in zip(targets, docstrings, strict=True):
        if docstring is None:
            report.skipped["the model wrote no summary"] += 1
            continue
        by_file.setdefault(target.source.path, {})[target.function.index] = docstring
        if origin:
            borrowed.append((target.source.path, target.function, origin))
    by_class = _class_docstrings(report.classes, generator, style, borrowed)
    updates = _updates(stale, generator if settings.describe else None, settings, report)
    # Conversions and updates of docstrings: an update of a stale one comes first (run
    # the conversion again after it).
    rewritten = {
        path: {**converted.get(path, {}), **updates.get(path, {})}
        for path in {*converted, *updates}
    }
    # Every file is edited and verified before any is written.
    changes = []
    inside = _inside_given(paths)
    for source in sources:
        key = source.path.as_posix()
        if source.path not in by_file and source.path not in rewritten and key not in by_class:
            continue
        if mode == "write" and not inside(source.path):
            report.errors.append(
                SourceError(
                    source.path,
                    0,
                    f"a link to {file_identity(source.path)}, outside the paths given: not written "
                    f"(name that file itself to document it)",
                )
            )
            continue
        try:
            changes.append(
                apply_docstrings(
                    source,
                    by_file.get(source.path, {}),
                    settings,
                    rewritten.get(source.path),
                    by_class.get(key),
                )
            )
        except SourceError as error:
            report.errors.append(error)
    failed = show_or_write(changes, mode)
    unwritten = {error.path for error in failed}
    report.documented = sum(
        len(by_file.get(c.source.path, ())) for c in changes if str(c.source.path) not in unwritten
    )
    written = [c.source.path for c in changes if str(c.source.path) not in unwritten]
    report.borrowed = _borrowed_where(borrowed, written, mode)
    report.updated = sum(len(updates.get(path, ())) for path in written)
    report.documented_classes = sum(len(by_class.get(path.as_posix(), ())) for path in written)
    report.converted = sum(
        len(set(converted.get(path, ())) - set(updates.get(path, ()))) for path in written
    )
    report.errors += failed
    return report


def _borrowed_where(
    borrowed: list[tuple[Path, Function | Klass, str]], written: list[Path], mode: str
) -> list[tuple[str, Function | Klass, str]]:
    """The borrowed docstrings of the files shown or written, each function or class as it
    stands in the file the user reads next: the old one for a diff (its `-` side), the new
    one once written (its docstring and those above it moved it down)."""
    after: dict[tuple[Path, bool], dict[int, Function | Klass]] = {}
    found = []
    for path, item, origin in borrowed:
        if path not in written:
            continue
        if mode == "write":
            key = (path, isinstance(item, Klass))
            if key not in after:
                try:
                    source = read_source(path)
                    now_items = classes_of(source) if key[1] else source.functions
                    after[key] = {i.index: i for i in now_items}
                except SourceError:  # changed since, by someone else: the old place
                    after[key] = {}
            now = after[key].get(item.index)
            item = now if now is not None and now.name == item.name else item
        found.append((path.as_posix(), item, origin))
    return sorted(found, key=lambda entry: (entry[0], entry[1].line))


def _class_docstrings(
    classes: Sequence[tuple[str, Klass]],
    generator: Generator | None,
    style: str,
    borrowed: list[tuple[Path, Function | Klass, str]],
) -> dict[str, dict[int, list[Paragraph]]]:
    """The docstrings of classes without one, by file and `Klass.index`: summaries in one
    batch; none where the model wrote no summary. Those that are a sibling's summary are
    added to `borrowed`."""
    if not classes or generator is None:
        return {}
    records = [class_record(klass) for _, klass in classes]
    results = generator.translate_batch(records, "docstring", SUMMARY, progress=True)
    found: dict[str, dict[int, list[Paragraph]]] = {}
    for (path, klass), result in zip(classes, results, strict=True):
        summary = prose_summary(result.text)
        if summary:
            paragraphs = class_docstring(summary, attributes_of(klass.node), style)
            found.setdefault(path, {})[klass.index] = paragraphs
            if result.origin:
                borrowed.append((Path(path), klass, result.origin))
    return found


def _updates(
    stale: Sequence[Stale],
    generator: Generator | None,
    settings: DocstringSettings,
    report: Report,
) -> dict[Path, dict[int, FunctionEdit]]:
    """The edits that bring stale docstrings in line with their code, by file and
    function; descriptions of new entries by `generator` (none without one)."""
    descriptions = describe(stale, generator) if generator else [None] * len(stale)
    edits: dict[Path, dict[int, FunctionEdit]] = {}
    for item, found in zip(stale, descriptions, strict=True):
        try:
            literal = updated_literal(item, found, settings.line_length)
        except Unreadable as error:
            line = item.function.line
            report.unreadable.append(SourceError(item.source.path, line, f"DS900 {error}"))
            continue
        if literal is not None:
            expected = docstring_source(item.source, item.function) or ""
            edit = literal_edit(expected, literal, item.source.newline)
            edits.setdefault(item.source.path, {})[item.function.index] = edit
    return edits
