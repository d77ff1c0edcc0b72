"""The `codemt` command line: one sub-command per stage of the pipeline.

Each command is a module of this package exposing `register(subparsers)`, which adds its
sub-command and sets `func` on the parsed arguments; the work is done by the library modules
outside it, which know nothing of argparse. Heavy imports (torch, transformers) wait inside
the functions that need them, so `codemt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from codemt import __version__

# The modules whose `register` adds a sub-command, in the order `codemt --help` lists them.
# Imported when the parser is built, not at import: the command modules import
# `codemt.cli.translate`'s shared arguments, and this package's own import must not wait
# on them.
COMMANDS = (
    "codemt.cli.mine",
    "codemt.cli.tokenizer",
    "codemt.cli.examples",
    "codemt.cli.model",
    "codemt.cli.train",
    "codemt.cli.recipe",
    "codemt.cli.translate",
    "codemt.cli.evaluate",
    "codemt.cli.export",
    "codemt.cli.docstring",
    "codemt.cli.complete",
    "codemt.cli.serve",
    "codemt.cli.lsp",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="codemt",
        description="Translate between Python code and natural language (an open PyMT5).",
    )
    parser.add_argument("--version", action="version", version=f"codemt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `codemt` executable; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
