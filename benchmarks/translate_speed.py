"""Translation speed: docstrings per second through `Translator`, batch 1 against batched.

A `small` model with random weights (speed does not depend on what the weights learned)
writes summary docstrings for real methods of the standard library. Random weights hardly
ever emit </s>, so every docstring runs the full `--max-new-tokens`: each row generates the
same number of tokens per docstring, and the rows compare decoding alone. Rows:

    batch B, beam K     `translate_batch` over `--methods` methods, B at a time, K beams

plus the first-token latency (one method, one new token: tokenising, the encoder and one
decoder step, what a user waits before anything can appear), median over the methods. The
ratio column compares every row with batch 1, greedy, measured in the same run.

    python benchmarks/translate_speed.py [--methods 32] [--max-new-tokens 48] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from codemt.generation import GenerationSettings
from codemt.model import PRESETS, build_model, write_model
from codemt.source.extract import extract_methods
from codemt.source.reading import parse_with_repairs
from codemt.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    TokenizerSettings,
    python_file_texts,
    save_tokenizer,
    special_token_id,
    train_tokenizer,
)
from codemt.translate import Translator

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ("textwrap.py", "shlex.py", "fractions.py", "statistics.py", "argparse.py")
PRESET = "small"


def stdlib_methods(n: int) -> list[dict]:
    """The first `n` methods with a body of a few standard-library modules, as records."""
    records = []
    for name in SOURCES:
        tree = parse_with_repairs((STDLIB / name).read_text(encoding="utf-8"))[0]
        records += [r for _, r in extract_methods(tree, repo="stdlib", path=name) if r["body"]]
    return records[:n]


def random_model(folder: Path, files: int) -> int:
    """Write a `small` checkpoint with random weights into `folder`; return its vocabulary size.

    Its tokenizer is trained on standard-library files, aiming at the preset's vocabulary.
    """
    tokenizer = train_tokenizer(
        python_file_texts(STDLIB, limit=files),
        TokenizerSettings(vocab_size=PRESETS[PRESET].vocab),
    )
    save_tokenizer(tokenizer, folder / "tokenizer")
    pad = special_token_id(tokenizer, PAD_TOKEN)
    eos = special_token_id(tokenizer, EOS_TOKEN)
    torch.manual_seed(0)
    model = build_model(PRESET, tokenizer.get_vocab_size(), pad, eos, pad)
    meta = {"preset": PRESET, "stage": "random", "context": PRESETS[PRESET].context}
    write_model(model, folder / "model", folder / "tokenizer", meta)
    return tokenizer.get_vocab_size()


def docstrings_per_second(
    translator: Translator, methods: list[dict], settings: GenerationSettings
) -> float:
    """Methods translated into docstrings per second of `translate_batch`."""
    t0 = time.perf_counter()
    translator.translate_batch(methods, "docstring", settings=settings)
    return len(methods) / (time.perf_counter() - t0)


def first_token_latency(translator: Translator, methods: list[dict], beams: int) -> float:
    """Median seconds to the first new token of one method."""
    settings = GenerationSettings(num_beams=beams, max_new_tokens=1, batch_size=1)
    times = []
    for method in methods:
        t0 = time.perf_counter()
        translator.translate_batch([method], "docstring", settings=settings)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", type=int, default=32, help="methods per row")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16, help="the batched rows' batch")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    parser.add_argument(
        "--tokenizer-files", type=int, default=400, help="stdlib files to train the BPE on"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = stdlib_methods(args.methods)

    with tempfile.TemporaryDirectory() as tmp:
        vocab = random_model(Path(tmp), args.tokenizer_files)
        translator = Translator.load(Path(tmp) / "model", device="cpu")
    sources = translator.encode(methods, "docstring")
    print(
        f"preset {PRESET} (random weights, vocabulary {vocab}), {len(methods)} stdlib methods "
        f"(source {statistics.mean(map(len, sources)):.0f} tokens on average), "
        f"{args.max_new_tokens} new tokens each, {args.threads} thread(s), device cpu, "
        f"backend {translator.backend.name}"
    )
    translator.translate_batch(methods[:2], "docstring")  # warm-up: first calls allocate

    rows = []
    for batch in (1, args.batch_size):
        for beams in (1, 4):
            settings = GenerationSettings(
                num_beams=beams, max_new_tokens=args.max_new_tokens, batch_size=batch
            )
            rate = docstrings_per_second(translator, methods, settings)
            rows.append((f"batch {batch}, beam {beams}", rate))
    baseline = rows[0][1]
    print(f"{'configuration':<20} {'docstrings/s':>12} {'tokens/s':>9} {'ratio':>6}")
    for name, rate in rows:
        tokens = rate * args.max_new_tokens
        print(f"{name:<20} {rate:>12.2f} {tokens:>9.0f} {rate / baseline:>5.2f}x")
    for beams in (1, 4):
        latency = first_token_latency(translator, methods, beams)
        print(f"first-token latency, batch 1, beam {beams}: {1000 * latency:.0f} ms (median)")


if __name__ == "__main__":
    main()
