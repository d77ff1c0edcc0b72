"""`codemt tokenizer train` on the command line: its arguments and what it prints (the work
itself is `codemt.tokenizer`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from codemt import corpus
from codemt.tokenizer import (
    HOLD_OUT_EVERY,
    MAX_HELD_OUT,
    TokenizerSettings,
    bytes_per_token,
    corpus_texts,
    python_file_texts,
    save_tokenizer,
    train_tokenizer,
)


def _train_command(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(
            f"{data}: not a folder; give a corpus made by `codemt mine` or a folder of .py files"
        )
    raw = args.raw or not corpus.manifest_path(data).is_file()
    settings = TokenizerSettings(vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    texts = (
        python_file_texts(data, args.limit_methods)
        if raw
        else corpus_texts(data, args.limit_methods)
    )

    held_out: list[str] = []
    n_trained = 0

    def training_texts() -> Iterator[str]:
        nonlocal n_trained
        for i, text in enumerate(texts):
            if i % HOLD_OUT_EVERY == 0 and len(held_out) < MAX_HELD_OUT:
                held_out.append(text)
            else:
                n_trained += 1
                yield text

    t0 = time.perf_counter()
    tok = train_tokenizer(training_texts(), settings)
    elapsed = time.perf_counter() - t0
    if not n_trained:
        kind = ".py files" if raw else "methods in the train split"
        raise SystemExit(f"{data}: no {kind} found to train on")
    path = save_tokenizer(tok, Path(args.out))
    print(f"trained on {n_trained} {'files' if raw else 'texts'} in {elapsed:.1f}s; saved {path}")
    print(f"vocab size: {tok.get_vocab_size()}")
    print(f"bytes/token on {len(held_out)} held-out texts: {bytes_per_token(tok, held_out):.3f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt tokenizer train` to the command line."""
    parser = subparsers.add_parser(
        "tokenizer", help="train the byte-level BPE tokenizer", description=__doc__.split("\n")[0]
    )
    actions = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train a tokenizer on a corpus or a folder of .py files",
        description="Train a byte-level BPE with single tokens for whitespace runs and save "
        "DIR/tokenizer.json (plus files for transformers' AutoTokenizer).",
    )
    train.add_argument(
        "data", metavar="DATA", help="corpus folder (from `codemt mine`) or a folder of .py files"
    )
    train.add_argument(
        "--vocab-size",
        type=int,
        default=TokenizerSettings.vocab_size,
        help="total vocabulary size (default: %(default)s)",
    )
    train.add_argument(
        "--min-frequency",
        type=int,
        default=TokenizerSettings.min_frequency,
        help="minimum count of a merged pair (default: %(default)s)",
    )
    train.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write the tokenizer into"
    )
    train.add_argument(
        "--limit-methods",
        type=int,
        default=None,
        metavar="N",
        help="train on at most N methods (N files with --raw)",
    )
    train.add_argument(
        "--raw",
        action="store_true",
        help="treat DATA as a folder of .py files even if it holds a corpus manifest",
    )
    train.set_defaults(func=_train_command)
