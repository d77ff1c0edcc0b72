"""Round-trip every standard-library file and compare compression with a GPT-2-style BPE.

Both tokenizers are byte-level BPEs with the same special tokens and vocabulary size, trained
on the same files (every `--train-every`-th stdlib file); the baseline has no whitespace
tokens, as GPT-2. Compression is measured on the other, held-out files and on the functions
and methods they define (dedented, as the corpus stores them). The round trip covers all
files.

    python benchmarks/tokenizer_roundtrip.py [--vocab-size 8192] [--train-every 4]
"""

from __future__ import annotations

import argparse
import ast
import re
import statistics
import sysconfig
import textwrap
import time
from pathlib import Path

from codemt.tokenizer import TokenizerSettings, bytes_per_token, train_tokenizer


def stdlib_files() -> tuple[list[str], int]:
    """The UTF-8 standard-library sources (site-packages excluded), and how many were not UTF-8."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts, skipped = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.relative_to(root).parts:
            continue
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            skipped += 1
    return texts, skipped


def functions(source: str) -> list[str]:
    """The dedented source of every function and method defined in `source`."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # the stdlib ships deliberately broken test files
        return []
    # Slice lines ourselves: ast.get_source_segment re-splits the file on every call.
    lines = source.splitlines(keepends=True)
    return [
        textwrap.dedent("".join(lines[node.lineno - 1 : node.end_lineno]))
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def tab_indented(source: str) -> str:
    """`source` with each leading four spaces turned into a tab, as tab-indented projects write it."""
    return re.sub(r"(?m)^(?:    )+", lambda m: "\t" * (len(m.group()) // 4), source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--train-every", type=int, default=4, help="train on every N-th file")
    args = parser.parse_args()

    texts, skipped = stdlib_files()
    train = texts[:: args.train_every]
    held_out = [t for i, t in enumerate(texts) if i % args.train_every]
    methods = [m for t in held_out for m in functions(t)]
    tabbed = [tab_indented(m) for m in methods]
    print(
        f"{len(texts)} stdlib files ({skipped} not UTF-8, skipped); trained on {len(train)}, "
        f"held out {len(held_out)} files with {len(methods)} functions; vocab {args.vocab_size}\n"
    )

    candidates = {
        "codemt (whitespace tokens)": TokenizerSettings(vocab_size=args.vocab_size),
        "GPT-2-style baseline": TokenizerSettings(
            vocab_size=args.vocab_size,
            max_indent=0,
            max_tab_indent=0,
            max_space_run=0,
            max_tab_run=0,
        ),
    }
    rows = []
    for name, settings in candidates.items():
        t0 = time.perf_counter()
        tok = train_tokenizer(train, settings)
        train_s = time.perf_counter() - t0
        decoded = tok.decode_batch(
            [e.ids for e in tok.encode_batch(texts)], skip_special_tokens=False
        )
        failures = sum(d != t for d, t in zip(decoded, texts, strict=True))
        lengths = [len(e.ids) for e in tok.encode_batch(methods)]
        tab_lengths = [len(e.ids) for e in tok.encode_batch(tabbed)]
        rows.append(
            (
                name,
                bytes_per_token(tok, held_out),
                statistics.mean(lengths),
                statistics.median(lengths),
                statistics.mean(tab_lengths),
                failures,
                train_s,
            )
        )

    header = (
        f"{'tokenizer':28} {'bytes/token':>11} {'tok/method':>10} {'median':>6} {'ratio':>6} "
        f"{'tabs: tok/method':>16} {'ratio':>6} {'round-trip fails':>16} {'train s':>7}"
    )
    print(header)
    print("-" * len(header))
    _, _, base_mean, _, base_tab_mean, _, _ = rows[-1]
    for name, bpt, mean, median, tab_mean, failures, train_s in rows:
        print(
            f"{name:28} {bpt:11.3f} {mean:10.1f} {median:6.0f} {mean / base_mean:6.3f} "
            f"{tab_mean:16.1f} {tab_mean / base_tab_mean:6.3f} "
            f"{f'{failures}/{len(texts)}':>16} {train_s:7.1f}"
        )
    print(
        "\nbytes/token: held-out files; tok/method: held-out functions, dedented; tabs: the same"
        "\nfunctions indented with tabs; ratio: mean tokens per function / baseline's (lower is"
        "\nbetter); round trip: decode(encode(file)) == file over all files"
    )


if __name__ == "__main__":
    main()
