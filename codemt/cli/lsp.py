"""`codemt lsp` on the command line: its arguments, and the checks made before
the language server starts (the work itself is `codemt.serve.lsp`)."""

from __future__ import annotations

import argparse
import os
import sys

from codemt.backends import select_backend
from codemt.cli.translate import add_model_arguments, generation_settings
from codemt.serve.lsp import LspSettings, create_server, serve
from codemt.translate import DEFAULT_MODEL, default_model_path


def _lsp_command(args: argparse.Namespace) -> int:
    try:
        from pygls.lsp.server import LanguageServer  # noqa: F401  (is the extra installed?)
    except ImportError:
        print(
            "codemt lsp: error: the language server needs the serve extra: "
            "pip install 'codemt[serve]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = LspSettings(
            model=args.model,
            backend=args.backend,
            style=args.style,
            generation=generation_settings(args, num_beams=args.beams),
            memory=args.memory != "none",
            lint=not args.no_lint,
        )
        # Fail now, not on the first code action (the model loads then).

        select_backend(
            default_model_path() if args.model == DEFAULT_MODEL else args.model, args.backend
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt lsp: error: {error}", file=sys.stderr)
        return 2
    stdin = sys.stdin.fileno()
    return serve(create_server(settings), lambda n: os.read(stdin, n), sys.stdout.buffer)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt lsp` to the command line."""
    parser = subparsers.add_parser(
        "lsp",
        help="run the language server (stdio) for editors",
        description="A Language Server Protocol server over stdio, offering the code actions "
        "'Generate docstring' and 'Generate body' (on stubs). Needs the serve extra "
        "(pip install 'codemt[serve]').",
    )
    parser.add_argument(
        "--style",
        choices=["summary", "google", "numpy", "rest"],
        default="summary",
        help="docstring style (default: %(default)s)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--memory",
        choices=("project", "none"),
        default="project",
        help="project: write with the workspace's documented functions beside each one "
        "(default, for a model trained to read them); none: each function alone",
    )
    parser.add_argument(
        "--no-lint",
        action="store_true",
        help="publish no diagnostics (by default each finding of `codemt docstring --lint`)",
    )
    parser.set_defaults(func=_lsp_command)
