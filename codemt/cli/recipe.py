"""`codemt recipe` on the command line: its arguments and what it prints (the work
itself is `codemt.recipe`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from codemt.recipe.corpus import check_copy_destination, copy_for_training
from codemt.recipe.run import run_recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `recipe` sub-command."""
    parser = subparsers.add_parser(
        "recipe",
        help="build the default model from scratch: mine, tokenize, train, evaluate, export",
        description=(
            "Run the default model's recipe: mine python:stdlib and python:site-packages, train "
            "the tokenizer, pre-train (where the recipe does), multi-mode train, evaluate and export to "
            "OUT/model. "
            "Resumable: rerun the same command to continue."
        ),
    )
    parser.add_argument("name", choices=["default"], help="which recipe")
    parser.add_argument(
        "--out", type=Path, default=Path.home() / ".cache" / "codemt" / "runs" / "default"
    )
    parser.add_argument(
        "--budget", type=parse_budget, help="stop (resumably) after this long, e.g. 150m"
    )
    parser.add_argument("--hardware", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument(
        "--preset",
        help="another model size than the hardware's recipe (see `codemt presets`), e.g. base",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        metavar="P",
        help="train with this dropout rate instead of the recipe's 0 (e.g. 0.1)",
    )
    parser.add_argument(
        "--prepare",
        nargs="?",
        const=True,
        metavar="COPY",
        help="mine and train the tokenizer, then stop; with COPY, also write there the "
        "smallest copy of OUT that trains, for a machine without network (the same command "
        "with --out COPY --train-only trains it there)",
    )
    parser.add_argument(
        "--finish",
        action="store_true",
        help="train no further: export and evaluate the best checkpoint so far (also one "
        "trained elsewhere and unpacked into OUT/multimode)",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="stop once trained, without exporting or evaluating (for a copy made with "
        "--prepare COPY, which has no test split: --finish does both where the model is "
        "brought back)",
    )
    parser.add_argument(
        "--benchmark", type=Path, help="CodeSearchNet/CodeXGLUE jsonl to evaluate docstrings on"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_recipe_command)


def _recipe_command(args: argparse.Namespace) -> int:
    from codemt.training.loop import TrainingInterrupted

    copy = None if args.prepare in (None, True) else Path(args.prepare)
    # The options a run was started with, which every later command on it must repeat.
    options = f" --preset {args.preset}" if args.preset else ""
    options += f" --dropout {args.dropout}" if args.dropout is not None else ""
    try:
        if copy is not None:
            check_copy_destination(copy)  # before mining, which takes minutes
        status = run_recipe(
            args.out,
            hardware=args.hardware,
            budget=args.budget,
            benchmark=args.benchmark,
            preset=args.preset,
            dropout=args.dropout,
            prepare_only=args.prepare is not None,
            finish=args.finish,
            train_only=args.train_only,
            progress=not args.quiet,
        )
        if copy is not None:
            size = copy_for_training(args.out, copy)
    except (ValueError, FileNotFoundError) as exc:
        print(f"codemt recipe: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        print(
            f"codemt recipe: {stop.signal_name} received, {stop.checkpoint} saved; rerun to continue",
            file=sys.stderr,
        )
        return 130
    if status["status"] == "done":
        print(f"default model exported to {status['model']}")
    elif status["status"] == "trained":
        print(
            f"trained to the recipe's target in {args.out}; bring {args.out / 'multimode'} "
            f"back into the prepared run folder and export and evaluate it there with "
            f"`codemt recipe default --hardware {status['hardware']}{options} --out RUN --finish`"
        )
    elif status["status"] == "stopped":
        print(
            f"budget spent during the {status['stage']} stage; rerun the same command to continue"
        )
    else:
        # The options the run was prepared with: another machine's `auto` may differ.
        train = f"codemt recipe default --hardware {status['hardware']}{options}"
        if copy is None:
            print(
                f"corpus and tokenizer ready in {args.out}; train with `{train} --out {args.out}`"
            )
        else:
            print(
                f"corpus and tokenizer ready in {args.out}, and copied for training to {copy} "
                f"({size / 1e6:.1f} MB); train that copy with `{train} --out {copy} "
                f"--train-only` (add --budget to stop and resume)"
            )
    return 0


def parse_budget(text: str) -> float:
    """Seconds from `90s`, `150m`, `2h` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"budget {text!r}: expected e.g. 150m, 2h or 900s")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
