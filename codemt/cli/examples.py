"""`codemt examples`: a corpus's training examples printed as the model sees them, as text
and as tokens (the work is `codemt.examples`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from codemt.corpus import iter_records, read_manifest
from codemt.examples import (
    FEATURES,
    ExampleSettings,
    Mode,
    Vocabulary,
    available_modes,
    build_span_masking,
    build_translation,
    encode_fields,
    pretraining_ids,
    target_style,
)
from codemt.tokenizer import load_tokenizer


def register(subparsers) -> None:
    """Add the `examples` sub-command."""
    parser = subparsers.add_parser(
        "examples",
        help="print training examples as the model sees them",
        description="Print a few training examples of a corpus, as text and as tokens.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "data", type=Path, metavar="DATA", help="corpus folder (from `codemt mine`)"
    )
    parser.add_argument(
        "--tokenizer", type=Path, required=True, help="tokenizer.json or its folder"
    )
    parser.add_argument("--n", type=int, default=5, help="how many examples")
    parser.add_argument("--stage", choices=["multimode", "pretrain"], default="multimode")
    parser.add_argument("--mode", help="force one mode, e.g. signature+body->docstring")
    parser.add_argument("--split", default="train", choices=["train", "valid", "test"])
    parser.add_argument("--context", action="store_true", help="add class, decorators and imports")
    parser.add_argument(
        "--name-words", action="store_true", help="follow a source signature with its name words"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_examples_command)


def _examples_command(args) -> int:
    try:
        forced = Mode.parse(args.mode) if args.mode else None
        read_manifest(args.data)
        tokenizer = load_tokenizer(args.tokenizer)
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt examples: {error}", file=sys.stderr)
        return 2
    return _print_examples(args, forced, tokenizer)


def _print_examples(args, forced: Mode | None, tokenizer) -> int:
    vocab = Vocabulary.from_tokenizer(tokenizer)
    settings = ExampleSettings(context=args.context, name_words=args.name_words, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    shown = 0
    for record in iter_records(args.data, args.split):
        if shown >= args.n:
            break
        tokens = encode_fields([record], tokenizer)[0]
        if args.stage == "pretrain":
            mode, style = None, None
            source, target = build_span_masking(
                pretraining_ids(tokens, vocab, settings), vocab, settings, rng
            )
        else:
            has = {f: bool(tokens[f]) for f in FEATURES}
            modes = [
                m
                for m in available_modes(has, bool(record["docstring_task"]))
                if forced in (None, m)
            ]
            if not modes:
                continue
            mode = modes[rng.integers(len(modes))]
            style = target_style(
                record["docstring_style"], rng.random() < settings.summary_fraction
            )
            style = style if mode.target == "docstring" else None
            source, target = build_translation(tokens, mode, style, vocab, settings)
        shown += 1
        title = f"{record['repo']}:{record['path']}:{record['lineno']} {record['name']}"
        what = (
            "span masking" if mode is None else mode.name + (f" (style {style})" if style else "")
        )
        print(f"=== example {shown}: {title}  [{what}]")
        for label, ids in (("source", source), ("target", target)):
            print(f"--- {label} text ({len(ids)} tokens)")
            print(tokenizer.decode(ids, skip_special_tokens=False))
            print(f"--- {label} tokens")
            print(" ".join(repr(tokenizer.decode([i], skip_special_tokens=False)) for i in ids))
        print()
    if not shown:
        print(f"no example could be built from the {args.split} split of {args.data}")
        return 1
    return 0
