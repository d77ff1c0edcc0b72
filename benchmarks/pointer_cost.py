"""What the copy mechanism (`codemt.pointer`) costs a training step on a CPU.

Forward and backward passes of one model size on batches shaped like the CPU recipe's
(a docstring batch: many short targets; a body batch: fewer, longer ones), three ways:
a plain T5, the PointerT5 as it trains (its loss from p at the labels alone), and the
PointerT5 with its mixture over the whole vocabulary (what it computes outside training
and computed in training before). Rounds interleave the three; medians are reported.

    python benchmarks/pointer_cost.py [--preset small] [--vocab 8192] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from codemt.model import build_model

# (batch, source tokens, target tokens): about 4,096 tokens each, as the CPU recipe batches.
SHAPES = {"docstring": (32, 104, 24), "body": (18, 128, 96)}
SPECIAL = [0, 1, 2]


def _batch(shape: tuple[int, int, int], vocab: int, g: torch.Generator) -> dict:
    batch, source, target = shape
    input_ids = torch.randint(3, vocab, (batch, source), generator=g)
    input_ids[:, :8] = input_ids[:, 8:16]  # repeated tokens, as code has
    labels = torch.randint(3, vocab, (batch, target), generator=g)
    labels[:, ::3] = input_ids[:, : len(range(0, target, 3))]  # a third copyable
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def _step_seconds(model: torch.nn.Module, batch: dict, training: bool) -> float:
    model.train(training)  # dropout is 0: the mode only picks the pointer's loss path
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(**batch, use_cache=False).loss.backward()  # as the training loop calls it
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    plain = build_model(args.preset, args.vocab, 0, 1, 0)
    pointer = build_model(args.preset, args.vocab, 0, 1, 0, copy_excluded_ids=SPECIAL)
    ways = {
        "plain T5": (plain, True),
        "copy, loss at the labels": (pointer, True),
        "copy, vocabulary-wide mixture": (pointer, False),
    }
    g = torch.Generator().manual_seed(0)
    print(f"{args.preset}, vocabulary {args.vocab}, {torch.get_num_threads()} threads")
    for name, shape in SHAPES.items():
        batch = _batch(shape, args.vocab, g)
        tokens = shape[0] * (shape[1] + shape[2])
        for model, training in ways.values():  # warm-up
            _step_seconds(model, batch, training)
        times = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way, (model, training) in ways.items():
                times[way].append(_step_seconds(model, batch, training))
        base = statistics.median(times["plain T5"])
        print(f"\n{name} batch {shape[0]} x {shape[1]}/{shape[2]} tokens ({tokens:,})")
        for way, seconds in times.items():
            median = statistics.median(seconds)
            print(
                f"  {way:32s} {median:6.3f} s  {tokens / median:7,.0f} tok/s  "
                f"{median / base:.2f}x plain"
            )


if __name__ == "__main__":
    main()
