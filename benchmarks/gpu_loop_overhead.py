"""How fast the training loop runs against one step alone: what the host costs on a GPU.

`benchmarks/gpu_step_time.py` times one step of fixed shape; the loop also builds batches,
copies them to the device, changes shapes every step, logs and counts. This runs
`codemt.training.loop.train` itself for `--steps` steps of the GPU recipe's model and settings (its
copy mechanism included) on

    synthetic batches  shaped like the recipe's (a 64k-token budget, sources of 8-256 and
                       targets of 4-128 tokens, random ids turned into Python lists and
                       collated): what the loop costs with cheap batches;
    --run RUN          the recipe's own batches from the run folder's corpus, tokenizer and
                       token cache (`codemt recipe default --out RUN`): what training gets,

in variants:

    workers      batches built ahead in worker processes (the default on a GPU)
    serial       built in the loop, between steps
    fixed shape  workers, every batch of the same shape (synthetic only)

and reports the loop's tokens/s (real tokens, padding excluded), median over the logged
intervals after the first. Measured on an H200 so far, for the model without the copy
mechanism (the recipe's then): batches built ahead in a thread ran the synthetic loop at
660k tokens/s (226k with pinned memory) but the recipe's training at 250-300k, where
building a batch holds the interpreter ~30 ms. The recipe's training with the copy
mechanism and batches built in workers ran at 230-400k tokens/s on one H100, and at
75-95k with 16k-token batches: ~0.2 s a step whatever its size, which this is to explain.

    python benchmarks/gpu_loop_overhead.py --tokenizer TOKENIZER_DIR [--run RUN] [--steps 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from codemt.data import collate
from codemt.recipe.recipes import RECIPES
from codemt.training import checkpoint, config, loop, prefetch


class SyntheticData:
    """Token-budget batches of random ids and lengths, built in Python like the real ones."""

    def __init__(self, budget: int, vocab: int, batches: int, fixed: bool, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.vocab, self.fixed, self.rng_seed = vocab, fixed, seed
        self.shapes = []
        for _ in range(batches):
            source = 256 if fixed else int(rng.integers(8, 257))
            target = 128 if fixed else int(rng.integers(4, 129))
            self.shapes.append((max(budget // (source + target), 1), source, target))

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        return len(self.shapes) // world_size

    def batches(self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0):
        for index in range(rank + start * world_size, len(self.shapes), world_size):
            rows, source, target = self.shapes[index]
            rng = np.random.default_rng([self.rng_seed, epoch, index])
            pairs = [
                (
                    rng.integers(3, self.vocab, source).tolist(),
                    rng.integers(3, self.vocab, target).tolist(),
                )
                for _ in range(rows)
            ]
            yield collate(pairs, 0, torch)


VARIANTS = {
    "workers": {"workers": 4, "fixed": False},
    "serial": {"workers": 0, "fixed": False},
    "fixed shape": {"workers": 4, "fixed": True},
}


def recipe_data(run: Path, tokenizer: Path):
    """The GPU recipe's multi-mode training batches over the run folder's corpus."""
    from codemt.corpus import Corpus
    from codemt.data import BatchSettings, ExampleData
    from codemt.examples import ExampleSettings, Vocabulary
    from codemt.recipe.recipes import RECIPES
    from codemt.token_cache import TokenCache
    from codemt.tokenizer import load_tokenizer

    recipe = RECIPES["gpu"]
    tok = load_tokenizer(tokenizer)
    cache = TokenCache.build(Corpus.open(run / "corpus"), "train", tok, run / "tokens")
    return ExampleData(
        cache,
        Vocabulary.from_tokenizer(tok),
        "multimode",
        ExampleSettings(**recipe.examples),
        BatchSettings(**recipe.batching),
    )


def run(variant: str, tokenizer: Path, steps: int, budget: int, vocab: int, data=None) -> dict:
    options = VARIANTS[variant]
    prefetch.GPU_WORKERS = options["workers"]
    if data is None:
        data = SyntheticData(budget, vocab, steps + 10, options["fixed"])
    # The GPU recipe's training (its copy mechanism included), without evaluations.
    recipe = RECIPES["gpu"]
    train = {k: v for k, v in recipe.train.items() if k != "select_on"} | {
        "mixed_precision": "bf16" if torch.cuda.is_available() else "no",
        "max_steps": steps,
        "eval_every": 0,
        "save_every": 10 * steps,
        "log_every": 10,
    }
    settings = config.TrainSettings(preset=recipe.preset, **train)
    with tempfile.TemporaryDirectory() as out:
        loop.train(data, settings, Path(out) / "run", tokenizer, progress=False)
        with open(Path(out) / "run" / checkpoint.LOG_FILE, newline="") as handle:
            rows = list(csv.DictReader(handle))
    timed = rows[1:] or rows[:1]
    return {
        "variant": variant,
        "tokens_per_s": round(statistics.median(float(r["tokens_per_s"]) for r in timed)),
        # Near 1: the loop waits for its batches; near 0: for the GPU or its own launches.
        "input_share": statistics.median(float(r["input_share"]) for r in timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder")
    parser.add_argument("--run", type=Path, help="a GPU recipe's run folder: train on its batches")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--budget", type=int, default=65536)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    from codemt.tokenizer import load_tokenizer

    vocab = load_tokenizer(args.tokenizer).get_vocab_size()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    data = recipe_data(args.run, args.tokenizer) if args.run else None
    variants = [v for v in args.variants if not (data and VARIANTS[v]["fixed"])]
    source = f"the recipe's batches of {args.run}" if data else f"budget {args.budget}"
    print(f"small, vocabulary {vocab}, {source}, on {device}", flush=True)
    results = []
    for variant in variants:
        results.append(run(variant, args.tokenizer, args.steps, args.budget, vocab, data))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": device, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
