"""`codemt docstring` on the command line: its arguments, and how results are printed.

The work itself is `codemt.write.docstring` (writing, updating, converting) and
`codemt.write.upkeep` (checking); this module parses the arguments into `DocstringSettings`,
runs them and prints one line per finding and a summary line.
"""

from __future__ import annotations

import argparse
import sys

from codemt.cli.translate import (
    add_memory_arguments,
    add_model_arguments,
    generation_settings,
    load_for_project,
)
from codemt.generation import borrowed_note
from codemt.source.docstrings import SUMMARY
from codemt.source.files import find_files
from codemt.write.apply import SourceError, read_source
from codemt.write.docstring import (
    AUTO,
    DEFAULT_LINE_LENGTH,
    DocstringSettings,
    document,
    plural,
    skip_reason,
)
from codemt.write.templates import STRUCTURED, STYLES
from codemt.write.upkeep import CODES, codes_selected, lint_sources


def _lint_command(args: argparse.Namespace, settings: DocstringSettings) -> int:
    """`--lint`: each finding as `path:line: CODE message`; exit 1 when any."""
    sources, errors = [], []
    for path in find_files(args.paths, include=settings.include, exclude=settings.exclude):
        try:
            sources.append(read_source(path))
        except SourceError as error:
            errors.append(error)
    findings = [
        (source, function, finding)
        for source, function, finding in lint_sources(
            sources, lambda f: skip_reason(f, settings) is None
        )
        if codes_selected(finding.code, args.select, args.ignore)
    ]
    for source, function, finding in findings:
        print(f"{source.path.as_posix()}:{function.line}: {finding.code} {finding.message}")
    for error in errors:
        print(f"{error}", file=sys.stderr)
    print(
        f"{plural(len(sources), 'file')}, {plural(len(findings), 'finding')}",
        file=sys.stderr,
    )
    return 1 if findings or errors else 0


def _docstring_command(args: argparse.Namespace) -> int:
    mode = "check" if args.check else "write" if args.write else "diff"
    try:
        settings = DocstringSettings(
            style=args.style,
            line_length=args.line_length,
            include=tuple(args.include or DocstringSettings.include),
            exclude=tuple(args.exclude),
            min_lines=args.min_lines,
            public_only=args.public_only,
            overwrite=args.overwrite,
            describe=not args.no_descriptions,
            update=args.update,
            placeholders=args.placeholders,
            convert=args.convert_style,
            classes=args.classes,
        )
        unknown = [
            c for c in [*args.select, *args.ignore] if not any(k.startswith(c) for k in CODES)
        ]
        if unknown:
            raise ValueError(f"no finding has the code {unknown[0]!r}; codes: {', '.join(CODES)}")
        if args.lint:
            return _lint_command(args, settings)
        generation = generation_settings(args, num_beams=args.beams, batch_size=args.batch_size)
        report = document(
            args.paths,
            settings,
            mode,
            lambda: load_for_project(args, args.paths, generation),
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt docstring: error: {error}", file=sys.stderr)
        return 2
    for path, function in report.missing:
        print(f"{path}:{function.line}: {function.name} has no docstring")
    if mode == "check":
        for path, klass in report.classes:
            print(f"{path}:{klass.line}: class {klass.name} has no docstring")
    for item in report.stale:
        codes = ", ".join(sorted({f.code for f in item.findings}))
        where = f"{item.source.path.as_posix()}:{item.function.line}"
        print(f"{where}: {item.function.name}'s docstring is out of date ({codes})")
    if mode == "check":
        for path, function in report.restyled:
            print(
                f"{path}:{function.line}: {function.name}'s docstring is not in {args.convert_style} style"
            )
    for path, function, origin in report.borrowed:
        print(f"{path}:{function.line}: {borrowed_note(function.name, origin)}", file=sys.stderr)
    for error in report.unreadable:
        print(f"{error} (left as it is)", file=sys.stderr)
    for error in report.errors:
        print(f"{error}", file=sys.stderr)
    print(report.summary(mode), file=sys.stderr)
    restyled = mode == "check" and (report.restyled or report.classes)
    return 1 if report.errors or report.missing or report.stale or restyled else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt docstring` to the command line."""
    parser = subparsers.add_parser(
        "docstring",
        help="write the missing docstrings of functions into their files",
        description="Find every function and method without a docstring under the paths, "
        "write one with the model and show the change as a diff (default), write it in "
        "place (--write), or only list the functions (--check, for CI: exit 1 if any).",
        epilog="Exit status: 0; 1 when a file could not be read, edited or written (it is "
        "left as it was) or, with --check, when a function has no docstring; 2 for bad "
        "arguments or a model that cannot be loaded.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print a unified diff (default)")
    mode.add_argument("--write", action="store_true", help="write the files in place")
    mode.add_argument(
        "--check",
        action="store_true",
        help="list functions without a docstring (with --update: and stale docstrings) and "
        "exit 1 if any (no model is loaded)",
    )
    mode.add_argument(
        "--lint",
        action="store_true",
        help="report each disagreement between a docstring and its code as "
        "'path:line: CODE message' and exit 1 if any (no model is loaded)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="also rewrite the sections of existing google/numpy/rest docstrings that "
        "disagree with the code (parameters, returns, yields, raises), keeping every "
        "description written",
    )
    parser.add_argument(
        "--classes",
        action="store_true",
        help="document classes too: a summary by the model and, for dataclasses, attrs "
        "classes and NamedTuples, their fields (Attributes) in the style",
    )
    parser.add_argument(
        "--convert-style",
        choices=list(STRUCTURED),
        metavar="STYLE",
        help="rewrite existing google/numpy/rest docstrings in STYLE (google, numpy, rest), "
        "every description kept word for word",
    )
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="CODE",
        help="--lint: report only these codes (or prefixes: DS1); repeatable",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODE",
        help="--lint: leave out these codes (or prefixes); repeatable",
    )
    parser.add_argument(
        "--style",
        choices=[*STYLES, AUTO],
        default=SUMMARY,
        help="docstring style; auto follows the style the files use most (default: %(default)s)",
    )
    parser.add_argument(
        "--no-descriptions",
        action="store_true",
        help="in google/numpy/rest, ask the model for no descriptions of parameters, "
        "returns and exceptions (one model pass instead of two)",
    )
    parser.add_argument(
        "--placeholders",
        action="store_true",
        help="in google/numpy/rest, write _description_ where the model describes nothing "
        "(default: leave it undescribed)",
    )
    parser.add_argument(
        "--line-length",
        type=int,
        default=DEFAULT_LINE_LENGTH,
        metavar="N",
        help="wrap docstrings to N columns (default: %(default)s)",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only files in folders matching this gitignore-style glob (default: *.py); repeatable",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip matching paths; repeatable",
    )
    parser.add_argument(
        "--min-lines",
        type=int,
        default=0,
        metavar="N",
        help="skip functions shorter than N lines",
    )
    parser.add_argument("--public-only", action="store_true", help="skip private functions")
    parser.add_argument("--overwrite", action="store_true", help="redo existing docstrings too")
    add_model_arguments(parser, batch_size=True)
    add_memory_arguments(parser)
    parser.set_defaults(func=_docstring_command)
