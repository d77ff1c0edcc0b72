"""How much a model uses its source: loss with each example's own source against a stranger's.

A translation model that has not yet learned to condition on its input writes the same
likely text for every input (a generic docstring for every function) and scores below
trivial baselines. This measures that directly and cheaply, long before BLEU moves: on
validation batches of one mode, the mean target loss with the right sources, and with the
sources shuffled across the batch (same mode and control codes, another method's text).
The gap (nats per target token) is what the source is worth to the model; near 0, it
ignores it.

    python benchmarks/source_gain.py CHECKPOINT... --corpus RUN/corpus [--batches 8]

Each CHECKPOINT is a `step-NNNNNN` folder or a run folder (its best, else its newest). The
checkpoint's own example settings and tokenizer build the examples.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from codemt.data import BatchSettings, ExampleData, TokenCache
from codemt.examples import Vocabulary, all_modes
from codemt.model import load_checkpoint
from codemt.tokenizer import load_tokenizer
from codemt.translate import example_settings

MODES = ("signature+body->docstring", "signature+docstring->body")


def source_gain(checkpoint: Path, corpus: Path, mode: str, batches: int, cache: Path) -> dict:
    """Mean loss with the right and with shuffled sources over `batches` valid batches."""
    loaded = load_checkpoint(checkpoint)
    tokenizer = load_tokenizer(loaded.path)
    # Only `mode` has weight (a mode left out of the weights counts 1, so all are listed).
    weights = {m.name: 0.0 for m in all_modes()} | {mode: 1.0}
    settings = replace(example_settings(loaded.meta), mode_weights=weights, undocumented_share=1.0)
    valid = TokenCache.build(corpus, "valid", tokenizer, cache, limit=4000)
    data = ExampleData(
        valid, Vocabulary.from_tokenizer(tokenizer), "multimode", settings, BatchSettings(4096)
    )
    model = loaded.model.eval()
    generator = torch.Generator().manual_seed(0)
    right = shuffled = 0.0
    n = 0
    with torch.no_grad():
        for batch in data.batches(0):
            if n == batches:
                break
            if batch["input_ids"].shape[0] < 2:
                continue
            perm = torch.randperm(batch["input_ids"].shape[0], generator=generator)
            right += model(**batch).loss.item()
            shuffled += model(
                input_ids=batch["input_ids"][perm],
                attention_mask=batch["attention_mask"][perm],
                labels=batch["labels"],
            ).loss.item()
            n += 1
    if n == 0:
        raise SystemExit(f"{corpus}: no valid batch of {mode} with two examples or more")
    step = loaded.meta.get("progress", {}).get("step", "?")
    return {"checkpoint": str(loaded.path), "step": step, "mode": mode, "batches": n,
            "right": right / n, "shuffled": shuffled / n}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("step     mode                             right  shuffled   gain")
    with tempfile.TemporaryDirectory() as cache:
        for checkpoint in args.checkpoints:
            for mode in MODES:
                r = source_gain(checkpoint, args.corpus, mode, args.batches, Path(cache))
                print(
                    f"{r['step']:>6}  {mode:<30} {r['right']:7.3f} {r['shuffled']:9.3f} "
                    f"{r['shuffled'] - r['right']:6.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
