"""`codemt complete FILE:FUNCTION`: draft the body of a stub from its signature and docstring.

    codemt complete shapes.py:Circle.area             # a diff of the drafted body
    codemt complete shapes.py:Circle.area --write     # written in place, safely

A stub is a function with a docstring whose only statement is `...`, `pass` or
`raise NotImplementedError`. The model translates signature and docstring into a body;
of its candidates (beams, or `--samples N` sampled ones) the best-scored one that makes
the file parse replaces the stub's statement. The file is verified and written as
`codemt docstring` writes: everything outside that function's body stays as it was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from codemt.apply import (
    Change,
    Function,
    SourceError,
    body_edit,
    edit_functions,
    encode,
    parse_cst,
    read_source,
    show_or_write,
    verify_edit,
)
from codemt.cli.translate import (
    add_model_arguments,
    generation_settings,
    load_for_project,
    split_location,
)
from codemt.docstring import Generator
from codemt.memory import add_memory_arguments
from codemt.templates import is_stub
from codemt.translate import GenerationSettings


class CompleteError(Exception):
    """Why a function cannot be completed, in one line for the user.

    `exit_code` is 2 for the user's input (no such function, not a stub) and 1 when the
    model wrote no body that parses.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def find_stub(functions: Sequence[Function], path: str, name: str) -> Function:
    """The function named `name` (qualified: `Class.method`), checked to be a stub."""
    chosen = [f for f in functions if f.name == name]
    if not chosen:
        names = ", ".join(f.name for f in functions) or "none"
        raise CompleteError(f"{path}: no function {name!r}; the functions in it are: {names}")
    function = chosen[0]
    where = f"{path}:{function.line}: {name}"
    if not function.docstring:
        raise CompleteError(f"{where} has no docstring to draft from: write one first")
    if not is_stub(function.node):
        raise CompleteError(
            f"{where} has a body already (only `...`, `pass` or `raise NotImplementedError` "
            f"is replaced)"
        )
    return function


def complete(
    path: str, name: str, generator: Generator, settings: GenerationSettings
) -> tuple[Change, str]:
    """Draft the body of stub `name` in file `path`: the verified change and the body.

    Raises CompleteError when the function is no stub or no candidate body parses, and
    SourceError when the file cannot be read or edited.
    """
    from pathlib import Path

    source = read_source(Path(path))
    function = find_stub(source.functions, path, name)
    record = {**function.record, "body": ""}
    result = generator.translate_batch(
        [record], "body", sources=("signature", "docstring"), settings=settings
    )[0]
    module = parse_cst(source)
    # Parsing candidates first, then by score: the Translator's own order of preference.
    candidates = sorted(result.candidates, key=lambda c: (c.parsed is True, c.score), reverse=True)
    for candidate in candidates:
        if not candidate.text.strip():
            continue
        try:
            edited = edit_functions(module, {function.index: body_edit(candidate.text)})
            new_data = encode(source.path, edited)
            verify_edit(source, new_data, [function.index], "body")
        except (ValueError, SourceError):
            continue
        return Change(source, new_data, edited.encoding), candidate.text
    raise CompleteError(
        f"{path}:{function.line}: none of the {len(candidates)} bodies the model wrote for "
        f"{name} parses; try --samples 8 or a larger --beams",
        exit_code=1,
    )


def _generation(args: argparse.Namespace) -> GenerationSettings:
    if args.samples:
        return generation_settings(
            args, num_beams=1, sample=True, num_samples=args.samples, seed=args.seed
        )
    return generation_settings(args, num_beams=args.beams)


def _complete_command(args: argparse.Namespace) -> int:
    path, name = split_location(args.location)
    if name is None:
        print("codemt complete: error: name the function: FILE:FUNCTION", file=sys.stderr)
        return 2
    try:
        settings = _generation(args)
        change, _ = complete(path, name, load_for_project(args, [path]), settings)
    except CompleteError as error:
        print(f"codemt complete: error: {error}", file=sys.stderr)
        return error.exit_code
    except (SourceError, ValueError, FileNotFoundError) as error:
        print(f"codemt complete: error: {error}", file=sys.stderr)
        return 2
    errors = show_or_write([change], "write" if args.write else "diff")
    for error in errors:
        print(f"codemt complete: error: {error}", file=sys.stderr)
    if args.write and not errors:
        print(f"codemt complete: wrote the body of {name} into {path}", file=sys.stderr)
    return 1 if errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt complete` to the command line."""
    parser = subparsers.add_parser(
        "complete",
        help="draft the body of a stub function from its signature and docstring",
        description="Replace the `...`, `pass` or `raise NotImplementedError` of a function "
        "that has a docstring with a body the model writes; show a diff (default) or write it "
        "in place (--write). Only a body with which the file parses is used.",
    )
    parser.add_argument(
        "location", metavar="FILE:FUNCTION", help="the file and the function's qualified name"
    )
    parser.add_argument("--write", action="store_true", help="write the file in place")
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help="sample N bodies and keep the best-scored that parses (default: beam search)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --samples")
    add_model_arguments(parser)
    add_memory_arguments(parser)
    parser.set_defaults(func=_complete_command)
