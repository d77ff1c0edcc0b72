"""Training throughput: `codemt.training` on token-budget batches against a naive loop.

All rows train the same model, from the same initial weights, for one epoch over the same
synthetic examples, whose lengths are log-normal like real methods (many short, a few long).
The rows differ in how examples are batched and in the loop:

    plain loop, padded     a bare PyTorch loop (forward, backward, AdamW step) over batches
                           of a fixed number of examples, padded to the longest one
    codemt, padded         `codemt.training.loop.train` over the same fixed-size batches
    codemt, token budget   `codemt.training.loop.train` over batches of examples of similar
                           lengths, filled up to a budget of padded tokens (as the data layer
                           builds)

Both batchings have the same number of batches, hence of optimiser steps. Throughput counts
real tokens (source + target, padding excluded) per second from the third step to the last,
so start-up and the first steps' warm-up are not timed. Each row runs in a fresh process so
that its peak resident memory is its own. One run, so the ratios hold on a noisy machine.

    python benchmarks/train_throughput.py [--preset tiny] [--examples 512] [--budget 4096]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import codemt
from codemt.model import PRESETS, build_model
from codemt.tokenizer import TokenizerSettings, save_tokenizer, train_tokenizer
from codemt.training.checkpoint import LOG_FILE
from codemt.training.config import TrainSettings
from codemt.training.loop import train

MODES = ("plain loop, padded", "codemt, padded", "codemt, token budget")
ID_LIMIT = 500  # token ids are drawn below this; the tokenizer has at least as many


def example_lengths(n: int, context: int, seed: int) -> np.ndarray:
    """(n, 2) source and target lengths: log-normal, median 96 and 24 tokens, capped."""
    rng = np.random.default_rng(seed)
    source = np.exp(rng.normal(math.log(96), 0.8, n)).clip(4, context)
    target = np.exp(rng.normal(math.log(24), 0.8, n)).clip(2, context // 2)
    return np.stack([source, target], axis=1).astype(np.int64)


def collate(lengths: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Random ids for examples of the given lengths, padded to the longest."""
    s, t = lengths.max(axis=0)
    input_ids = torch.zeros(len(lengths), s, dtype=torch.long)  # (batch, src_len)
    labels = torch.full((len(lengths), t), -100, dtype=torch.long)  # (batch, tgt_len)
    for i, (src_len, tgt_len) in enumerate(lengths):
        input_ids[i, :src_len] = torch.from_numpy(rng.integers(3, ID_LIMIT, src_len))
        labels[i, :tgt_len] = torch.from_numpy(rng.integers(3, ID_LIMIT, tgt_len))
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}


def token_budget_batches(lengths: np.ndarray, budget: int, seed: int) -> list[np.ndarray]:
    """Indices of examples sorted by length, cut where padded tokens would pass `budget`;
    the batches in a random order."""
    order = np.lexsort((lengths[:, 1], lengths[:, 0]))
    batches, current, longest = [], [], np.zeros(2, dtype=np.int64)
    for i in order:
        grown = np.maximum(longest, lengths[i])
        if current and (len(current) + 1) * grown.sum() > budget:
            batches.append(np.asarray(current))
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    batches.append(np.asarray(current))
    return [batches[i] for i in np.random.default_rng(seed).permutation(len(batches))]


def fixed_size_batches(n: int, n_batches: int, seed: int) -> list[np.ndarray]:
    """Shuffled examples in `n_batches` batches of (nearly) equal size."""
    return np.array_split(np.random.default_rng(seed).permutation(n), n_batches)


class ListData:
    """The `TrainData` protocol over a fixed list of batches (one process)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]):
        self.list = batches

    def batches(
        self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict]:
        yield from self.list[start:]

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        return len(self.list)


def make_batches(args: argparse.Namespace, mode: str) -> list[dict[str, torch.Tensor]]:
    lengths = example_lengths(args.examples, PRESETS[args.preset].context, args.seed)
    bucketed = token_budget_batches(lengths, args.budget, args.seed)
    if mode == "codemt, token budget":
        indices = bucketed
    else:
        indices = fixed_size_batches(len(lengths), len(bucketed), args.seed)
    rng = np.random.default_rng(args.seed)
    return [collate(lengths[i], rng) for i in indices]


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())


def run_plain(
    batches: list[dict[str, torch.Tensor]], args: argparse.Namespace, vocab: int
) -> list[tuple[int, float]]:
    """The bare loop; returns (cumulative tokens, seconds) after every step."""
    torch.manual_seed(args.seed)
    model = build_model(args.preset, vocab, 0, 1, 0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    marks, tokens, t0 = [], 0, time.perf_counter()
    for batch in batches:
        model(**batch, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += real_tokens(batch)
        marks.append((tokens, time.perf_counter() - t0))
    return marks


def run_codemt(
    batches: list[dict[str, torch.Tensor]], args: argparse.Namespace, tokenizer_dir: Path
) -> list[tuple[int, float]]:
    """`codemt.training.loop.train` for one epoch; returns (cumulative tokens, seconds) from
    its log."""
    settings = TrainSettings(
        preset=args.preset,
        max_steps=len(batches),
        log_every=1,
        eval_every=0,
        save_every=0,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as out:
        train(ListData(batches), settings, Path(out), tokenizer_dir, progress=False)
        with (Path(out) / LOG_FILE).open(encoding="utf-8") as f:
            return [(int(r["tokens"]), float(r["elapsed_s"])) for r in csv.DictReader(f)]


def worker(args: argparse.Namespace) -> None:
    """Run one row and print its result as JSON."""
    torch.set_num_threads(args.threads)
    batches = make_batches(args, args.worker)
    with tempfile.TemporaryDirectory() as tmp:
        # The tokenizer only fixes the vocabulary size and special ids: train it on our source.
        texts = [p.read_text(encoding="utf-8") for p in Path(codemt.__file__).parent.rglob("*.py")]
        tokenizer = train_tokenizer(texts, TokenizerSettings(vocab_size=640))
        assert tokenizer.get_vocab_size() >= ID_LIMIT
        save_tokenizer(tokenizer, Path(tmp))
        if args.worker == "plain loop, padded":
            marks = run_plain(batches, args, tokenizer.get_vocab_size())
        else:
            marks = run_codemt(batches, args, Path(tmp))
    (tokens_2, t_2), (tokens_end, t_end) = marks[1], marks[-1]
    padded = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches)
    result = {
        "steps": len(batches),
        "tokens_per_s": (tokens_end - tokens_2) / (t_end - t_2),
        "padding": 1 - sum(real_tokens(b) for b in batches) / padded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=list(PRESETS))
    parser.add_argument("--examples", type=int, default=512, help="examples in the epoch")
    parser.add_argument(
        "--budget", type=int, default=4096, help="padded tokens per token-budget batch"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(
        f"preset {args.preset}, {args.examples} examples, budget {args.budget} padded tokens, "
        f"{args.threads} thread(s)"
    )
    results = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--worker", mode]
        command += [
            "--preset",
            args.preset,
            "--examples",
            str(args.examples),
            "--budget",
            str(args.budget),
        ]
        command += ["--threads", str(args.threads), "--seed", str(args.seed)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])
    baseline = results[MODES[0]]["tokens_per_s"]
    print(f"{'':<22} {'steps':>5} {'padding':>8} {'real tok/s':>11} {'ratio':>6} {'peak RSS':>9}")
    for mode, r in results.items():
        print(
            f"{mode:<22} {r['steps']:>5} {r['padding']:>8.1%} {r['tokens_per_s']:>11,.0f} "
            f"{r['tokens_per_s'] / baseline:>5.2f}x {r['peak_rss_mb']:>7,.0f}MB"
        )


if __name__ == "__main__":
    main()
