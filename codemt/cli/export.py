"""`codemt export` on the command line: its arguments and what it prints (the work
itself is `codemt.export`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codemt.backends import CTRANSLATE2_FORMAT, CTRANSLATE2_SUBFOLDER
from codemt.export import FORMATS, QUANTIZATIONS
from codemt.model import resolve_checkpoint
from codemt.translate import DEFAULT_MODEL, default_model_path


def _export_command(args: argparse.Namespace) -> int:

    try:
        model = default_model_path() if args.model == DEFAULT_MODEL else args.model
        out = args.out or resolve_checkpoint(model) / CTRANSLATE2_SUBFOLDER
        FORMATS[args.format](model, out, args.quantization)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"codemt export: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote a {args.format} {args.quantization} export of {args.model} to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt export` to the command line."""
    parser = subparsers.add_parser(
        "export",
        help="convert a checkpoint for fast inference (CTranslate2, int8)",
        description="Convert a checkpoint into a CTranslate2 model, optionally quantized to "
        "int8, that `codemt translate`, `evaluate` and the Translator API load like the "
        "checkpoint itself.",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="checkpoint or run folder, or 'default' for the shipped model",
    )
    parser.add_argument("--format", choices=list(FORMATS), default=CTRANSLATE2_FORMAT)
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="int8",
        help="weight type (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where to write (default: the checkpoint's {CTRANSLATE2_SUBFOLDER}/ subfolder, "
        "which --backend auto then uses)",
    )
    parser.set_defaults(func=_export_command)
