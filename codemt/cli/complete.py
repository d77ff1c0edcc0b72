"""`codemt complete` on the command line: its arguments and what it prints (the work
itself is `codemt.write.complete`)."""

from __future__ import annotations

import argparse
import sys

from codemt.cli.translate import (
    add_memory_arguments,
    add_model_arguments,
    generation_settings,
    load_for_project,
    split_location,
)
from codemt.generation import GenerationSettings
from codemt.write.apply import SourceError, show_or_write
from codemt.write.complete import CompleteError, complete


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
