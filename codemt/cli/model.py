"""`codemt presets` on the command line: its arguments and what it prints (the work
itself is `codemt.model`)."""

from __future__ import annotations

import argparse

from codemt.model import format_presets


def _presets_command(args: argparse.Namespace) -> int:
    print(format_presets(args.vocab_size))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt presets` to the command line."""
    parser = subparsers.add_parser(
        "presets",
        help="list the model sizes with their exact parameter counts",
        description="List every model preset: shape, exact parameter count, context, default lr.",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="count with this vocabulary size (default: each preset's own)",
    )
    parser.set_defaults(func=_presets_command)
