"""Where a training step's time goes on a GPU: forward + backward against the optimiser.

The GPU recipe's `small` model trained at 250-300k tokens/s on one H200, a few per cent of
the card's bf16 peak. This times, on random token ids of the recipe's shapes, the parts
of one step in bf16 autocast: forward + backward, gradient clipping, and the optimiser
step of codemt's Adafactor (what the recipe trains with: a loop over weights that never
waits for the GPU), transformers' Adafactor (the same arithmetic, with a host sync per
weight), PyTorch's Adafactor (`foreach`) and fused AdamW, at each batch token budget given. Medians over `--steps` steps after `--warmup` steps.

    python benchmarks/gpu_step_time.py [--preset small] [--vocab 8192] [--budgets 65536 131072]

Runs on a CPU too (slowly, in float32), so the script can be checked anywhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from codemt.model import build_model


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _optimizers(model: torch.nn.Module, lr: float) -> dict:
    from transformers.optimization import Adafactor

    fused = next(model.parameters()).device.type == "cuda"
    from codemt.training.optim import Adafactor as OurAdafactor

    return {
        "codemt Adafactor (the recipe's)": lambda: OurAdafactor(model.parameters(), lr=lr),
        "transformers Adafactor": lambda: Adafactor(
            model.parameters(), lr=lr, scale_parameter=True, relative_step=False
        ),
        "torch Adafactor (foreach)": lambda: torch.optim.Adafactor(
            model.parameters(), lr=lr, foreach=True
        ),
        "AdamW (fused on GPU)": lambda: torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused),
    }


def measure(preset: str, vocab: int, budget: int, steps: int, warmup: int) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(preset, vocab, pad_id=0, eos_id=1, decoder_start_id=0).to(device)
    model.train()
    # Sources of 200 tokens and targets of 56: the recipe's mean example, padded.
    source, target = 200, 56
    rows = max(budget // (source + target), 1)
    batch = {
        "input_ids": torch.randint(3, vocab, (rows, source), device=device),
        "attention_mask": torch.ones(rows, source, dtype=torch.long, device=device),
        "labels": torch.randint(3, vocab, (rows, target), device=device),
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def forward_backward() -> None:
        with autocast:
            loss = model(**batch, use_cache=False).loss
        loss.backward()

    results = []
    for name, make in _optimizers(model, 1e-2).items():
        optimizer = make()
        times = {"forward+backward": [], "clip": [], "optimizer": []}
        for step in range(warmup + steps):
            optimizer.zero_grad(set_to_none=True)
            fb = _timed(forward_backward, device)
            clip = _timed(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0), device)
            opt = _timed(optimizer.step, device)
            if step >= warmup:
                times["forward+backward"].append(fb)
                times["clip"].append(clip)
                times["optimizer"].append(opt)
        medians = {k: statistics.median(v) for k, v in times.items()}
        total = sum(medians.values())
        results.append(
            {
                "budget": budget,
                "rows": rows,
                "optimizer": name,
                **{f"{k}_ms": round(1000 * v, 2) for k, v in medians.items()},
                "step_ms": round(1000 * total, 2),
                "tokens_per_s": round(rows * (source + target) / total),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--budgets", type=int, nargs="+", default=[65536, 131072])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{args.preset}, vocabulary {args.vocab}, on {device}", flush=True)
    results = [
        row
        for budget in args.budgets
        for row in measure(args.preset, args.vocab, budget, args.steps, args.warmup)
    ]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {"device": device, "preset": args.preset, "results": results}, handle, indent=2
            )


if __name__ == "__main__":
    main()
