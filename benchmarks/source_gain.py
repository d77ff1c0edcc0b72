"""How much a model uses its source: loss with each example's own source against a stranger's.

A translation model that has not yet learned to condition on its input writes the same
likely text for every input (a generic docstring for every function) and scores below
trivial baselines. This measures that directly and cheaply, long before BLEU moves: on
validation examples of one mode, the mean target loss with the right sources, and with
each source swapped for another example's of about the same length (same mode and control
codes, another method's text).
The gap (nats per target token) is what the source is worth to the model; near 0, it
ignores it.

Beside it, the mean loss of the target tokens that spell a word of the signature's names
(` dict` in "Return the dict for ..." of `def get_dict(self)`), with their share of the
target tokens: the words a model that copies from its source should find cheapest.

    python benchmarks/source_gain.py CHECKPOINT... --corpus RUN/corpus [--batches 8]

Each CHECKPOINT is a `step-NNNNNN` folder or a run folder (its best, else its newest). The
checkpoint's own example settings and tokenizer build the examples; checkpoints of one
tokenizer are measured on the same methods, modes and styles.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from codemt.corpus import Corpus
from codemt.data import BatchSettings, ExampleData, collate
from codemt.examples import FEATURES, TOKEN_FIELDS, Vocabulary, all_modes, control_ids
from codemt.model import load_checkpoint
from codemt.token_cache import TokenCache
from codemt.tokenizer import load_tokenizer
from codemt.translate import example_settings

MODES = ("signature+body->docstring", "signature+docstring->body")
BATCH = 32  # examples a batch


def name_word_mask(data: ExampleData, tokenizer, items: list, labels: torch.Tensor) -> torch.Tensor:
    """Which target tokens spell a word of their method's signature names."""
    mask = torch.zeros(labels.shape, dtype=torch.bool)
    for row, item in enumerate(items):
        names = tokenizer.decode(data.cache.ids(item.method, "names").tolist())
        words = set(re.findall(r"[a-z0-9]{2,}", names))
        for position, token in enumerate(labels[row].tolist()):
            if token >= 0 and tokenizer.decode([token]).strip().lower() in words:
                mask[row, position] = True
    return mask


def source_gain(checkpoint: Path, corpus: Path, mode: str, batches: int, cache: Path) -> dict:
    """Loss per target token with the right and with shuffled sources on `batches` x 32 valid
    examples of `mode`, and that of the target tokens that are name words."""
    loaded = load_checkpoint(checkpoint)
    tokenizer = load_tokenizer(loaded.path)
    # Only `mode` has weight (a mode left out of the weights counts 1, so all are listed).
    weights = {m.name: 0.0 for m in all_modes()} | {mode: 1.0}
    settings = replace(example_settings(loaded.meta), mode_weights=weights, undocumented_share=1.0)
    valid = TokenCache.build(Corpus.open(corpus), "valid", tokenizer, cache, limit=4000)
    data = ExampleData(
        valid, Vocabulary.from_tokenizer(tokenizer), "multimode", settings, BatchSettings(4096)
    )
    # The epoch's examples are drawn alike for every checkpoint of one corpus and tokenizer:
    # the same random sample of them, sorted by the length of their features (not of the
    # sources the settings build) to batch with little padding and the same neighbours.
    planned = list(data.plan(0).examples())
    sample = np.random.default_rng(0).permutation(len(planned))[: batches * BATCH]
    fields = [TOKEN_FIELDS.index(f) for f in FEATURES]
    items = sorted(
        (planned[i] for i in sample),
        key=lambda p: (int(valid.lengths[p.method, fields].sum()), p.method),
    )
    if len(items) < 2:
        raise SystemExit(f"{corpus}: fewer than two valid examples of {mode}")
    control = len(control_ids(items[0].mode, items[0].style, data.vocab))
    model = loaded.model.eval()
    bounds = [*range(0, len(items), BATCH), len(items)]
    if bounds[-1] - bounds[-2] == 1:  # no batch of one: it has no other source to borrow
        del bounds[-2]
    totals = {"right": 0.0, "shuffled": 0.0, "name_words": 0.0, "targets": 0, "names": 0}
    with torch.no_grad():
        for start, end in zip(bounds, bounds[1:], strict=False):
            chunk = items[start:end]
            batch = collate([data.build(item, 0) for item in chunk], data.vocab.pad, torch)
            # The next one's source, behind each example's own control code (its style).
            perm = (torch.arange(len(chunk)) + 1) % len(chunk)
            swapped = batch["input_ids"][perm]
            swapped[:, :control] = batch["input_ids"][:, :control]
            labels = batch["labels"]
            right = token_losses(model, batch["input_ids"], batch["attention_mask"], labels)
            shuffled = token_losses(model, swapped, batch["attention_mask"][perm], labels)
            is_name = name_word_mask(data, tokenizer, chunk, labels)
            totals["right"] += right.sum().item()
            totals["shuffled"] += shuffled.sum().item()
            totals["name_words"] += right[is_name].sum().item()
            totals["targets"] += int((labels >= 0).sum())
            totals["names"] += int(is_name.sum())
    step = loaded.meta.get("progress", {}).get("step", "?")
    targets = totals["targets"]
    return {"checkpoint": str(loaded.path), "step": step, "mode": mode, "examples": len(items),
            "right": totals["right"] / targets, "shuffled": totals["shuffled"] / targets,
            "name_words": totals["name_words"] / max(totals["names"], 1),
            "name_share": totals["names"] / targets}  # fmt: skip


def token_losses(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """Each target token's loss (0 on padding)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=8, help="32 examples each")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("step     mode                             right  shuffled   gain  name words (share)")
    with tempfile.TemporaryDirectory() as cache:
        for checkpoint in args.checkpoints:
            for mode in MODES:
                r = source_gain(checkpoint, args.corpus, mode, args.batches, Path(cache))
                print(
                    f"{r['step']:>6}  {mode:<30} {r['right']:7.3f} {r['shuffled']:9.3f} "
                    f"{r['shuffled'] - r['right']:6.3f}  {r['name_words']:7.3f} "
                    f"({r['name_share']:.1%})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
