"""`codemt train` on the command line: its arguments and what it prints (the work
itself is `codemt.training.stages`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codemt.model import resolve_checkpoint
from codemt.training.stages import STAGE_CHOICES, load_config, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="pre-train and multi-mode train a model on a corpus",
        description=(
            "Train an encoder-decoder model on a corpus from `codemt mine`: span-masking "
            "pre-training, multi-mode translation, or both in sequence. Runs on CPU, one GPU, "
            "or many with `accelerate launch` / `torchrun`."
        ),
    )
    parser.add_argument("--preset", default="small", help="model size (see `codemt presets`)")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder from `codemt mine`")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    parser.add_argument(
        "--tokenizer", type=Path, help="tokenizer.json or its folder (default: train one)"
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file of settings (train, examples, batching)"
    )
    parser.add_argument("--stage", choices=STAGE_CHOICES, default="both")
    parser.add_argument("--init", type=Path, help="start from this checkpoint (fine-tuning)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many optimiser steps (per stage)"
    )
    parser.add_argument("--max-tokens", type=int, help="stop after this many tokens (per stage)")
    parser.add_argument("--max-time", type=float, help="stop after this many seconds (per stage)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    parser.add_argument("--warmup-steps", type=int, help="warm-up steps (default: the preset's)")
    parser.add_argument("--schedule", choices=["inverse_sqrt", "cosine", "linear"])
    parser.add_argument("--grad-accum", type=int, help="micro-batches per optimiser step")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    parser.add_argument("--eval-every", type=int, help="steps between validation losses")
    parser.add_argument("--save-every", type=int, help="steps between checkpoints")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--cache-dir", type=Path, help="token caches (default: OUT/cache)")
    parser.add_argument(
        "--valid-limit",
        type=int,
        default=2000,
        help="methods of the valid split to evaluate on (spread over it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_train_command)


def _train_command(args: argparse.Namespace) -> int:
    from codemt.training.loop import TrainingInterrupted

    overrides = {
        "max_steps": args.max_steps,
        "max_tokens": args.max_tokens,
        "max_time": args.max_time,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "schedule": args.schedule,
        "grad_accum": args.grad_accum,
        "mixed_precision": args.mixed_precision,
        "eval_every": args.eval_every,
        "save_every": args.save_every,
        "seed": args.seed,
    }
    try:
        checkpoint = run_training(
            args.data,
            args.out,
            preset=args.preset,
            stage=args.stage,
            tokenizer=args.tokenizer,
            config=load_config(args.config),
            overrides=overrides,
            init=args.init,
            resume=args.resume,
            cache_dir=args.cache_dir,
            valid_limit=args.valid_limit,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"codemt train: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        print(f"codemt train: {stop} (add --resume)", file=sys.stderr)
        return 130
    print(f"checkpoint: {checkpoint}")
    best = resolve_checkpoint(checkpoint.parent)
    if best != checkpoint:
        print(f"best checkpoint (what the run folder stands for): {best}")
    return 0
