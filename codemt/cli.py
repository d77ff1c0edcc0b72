"""The `codemt` command line: one sub-command per stage of the pipeline.

Each stage module exposes `register(subparsers)`, which adds its sub-command and sets
`func` on the parsed arguments. Stage modules keep heavy imports (torch, transformers)
inside the functions that need them, so `codemt --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from codemt import (
    __version__,
    complete,
    docstring_cli,
    evaluate,
    examples,
    export,
    lsp,
    model,
    recipe,
    serve,
    tokenizer,
    train_cli,
    translate_cli,
)
from codemt.mine import cli as mine_cli

REGISTRARS = [
    mine_cli.register,
    tokenizer.register,
    examples.register,
    model.register,
    train_cli.register,
    recipe.register,
    translate_cli.register,
    evaluate.register,
    export.register,
    docstring_cli.register,
    complete.register,
    serve.register,
    lsp.register,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="codemt",
        description="Translate between Python code and natural language (an open PyMT5).",
    )
    parser.add_argument("--version", action="version", version=f"codemt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
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


if __name__ == "__main__":
    sys.exit(main())
