"""The fastest CPU settings for training the `small` preset: threads, token budget, torch.compile.

Every configuration trains the same `small` model (vocabulary 16,384) with AdamW on the
same synthetic examples (log-normal lengths like the local corpus under the CPU recipe:
sources up to 192 tokens, targets up to 96), batched by token budget as the data layer
does. Each configuration runs in a fresh process; throughput is real (non-padding) tokens
per second over the timed steps, after warm-up steps (which also absorb compilation).
The configurations run interleaved, `--rounds` times, and the table reports medians, so
the comparison holds on a shared, noisy machine.

    python benchmarks/train_cpu_settings.py [--steps 6] [--rounds 2] [--no-compile]

torch.compile (inductor, dynamic shapes) spends minutes compiling on 2 cores before its
first step, and token-budget batches change shape every step: run with --no-compile
unless that is what is being measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CONFIGS = [
    {"threads": 1, "budget": 4096, "compile": False},
    {"threads": 2, "budget": 2048, "compile": False},
    {"threads": 2, "budget": 4096, "compile": False},
    {"threads": 2, "budget": 8192, "compile": False},
    {"threads": 2, "budget": 4096, "compile": True},
]


def worker(config: dict, steps: int, warmup: int) -> dict:
    """Train `warmup + steps` steps in this process; return real tokens/s of the timed steps."""
    import numpy as np
    import torch

    from codemt.data import BatchSettings, ExampleData, collate
    from codemt.model import build_model

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    model = build_model("small", 16384, 0, 1, 0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    step_fn = model
    if config["compile"]:
        step_fn = torch.compile(model, dynamic=True)
    rng = np.random.default_rng(0)
    n = 4000
    source = np.exp(rng.normal(np.log(60), 0.9, n)).clip(8, 192).astype(int)
    target = np.exp(rng.normal(np.log(18), 0.9, n)).clip(3, 96).astype(int)
    data = ExampleData.__new__(ExampleData)
    data.batching = BatchSettings(max_tokens=config["budget"])
    order, bounds = data._batch(source, target, np.random.default_rng(1))
    batches = [order[bounds[j] : bounds[j + 1]].tolist() for j in range(len(bounds) - 1)]
    tokens = elapsed = 0.0
    for position, batch in enumerate(batches[: warmup + steps]):
        pairs = [(rng.integers(200, 16000, source[i]).tolist(), rng.integers(200, 16000, target[i]).tolist()) for i in batch]  # fmt: skip
        inputs = collate(pairs, 0, torch)
        t0 = time.perf_counter()
        loss = step_fn(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if position >= warmup:
            elapsed += time.perf_counter() - t0
            tokens += int(inputs["attention_mask"].sum()) + int((inputs["labels"] != -100).sum())
    return {"tokens_per_s": tokens / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.steps, args.warmup)))
        return
    configs = [c for c in CONFIGS if not (args.no_compile and c["compile"])]
    results: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    for round_ in range(args.rounds):
        for index, config in enumerate(configs):
            warmup = args.warmup + (3 if config["compile"] else 0)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(config), "--steps", str(args.steps),
                 "--warmup", str(warmup)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[index].append(json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"])
            print(f"round {round_ + 1}: {config} {results[index][-1]:.0f} tokens/s", flush=True)
    base = statistics.median(results[0])
    print(
        f"{'threads':>7} {'budget':>7} {'compile':>8} {'tokens/s (median)':>18} {'vs 1 thread':>12}"
    )
    for index, config in enumerate(configs):
        rate = statistics.median(results[index])
        print(
            f"{config['threads']:>7} {config['budget']:>7} {str(config['compile']):>8} {rate:>18.0f} {rate / base:>11.2f}x"
        )


if __name__ == "__main__":
    main()
