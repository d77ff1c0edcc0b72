"""`codemt evaluate` and `codemt score` on the command line: its arguments and what it prints (the work
itself is `codemt.evaluate`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codemt.cli.translate import (
    BEAMS_HELP,
    add_backend_argument,
    add_decoding_arguments,
    generation_settings,
)
from codemt.evaluate import (
    MEMORIES,
    evaluate,
    format_table,
    load_data,
    parse_mode,
    read_lines,
    report_rows,
    write_results,
)
from codemt.metrics import score_texts
from codemt.translate import Translator


def _evaluate_command(args: argparse.Namespace) -> int:

    try:
        data = load_data(args.data, args.split)
        modes = [parse_mode(m) for m in args.modes or data.default_targets]
        settings = generation_settings(args, num_beams=args.beams, batch_size=args.batch_size)
        models = [args.model] + ([args.compare] if args.compare else [])
        translators = [Translator.load(m, settings=settings, backend=args.backend) for m in models]
        evaluations = [
            evaluate(t, data, modes, limit=args.limit, progress=args.progress, memory=args.memory)
            for t in translators
        ]
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt evaluate: error: {error}", file=sys.stderr)
        return 2
    reports = [report for report, _ in evaluations]
    for report in reports:
        if report["same_corpus"] is False and args.split != "train":
            print(
                f"codemt evaluate: warning: {report['model']} was trained on another corpus "
                f"than {args.data} (or on it before it was mined again): its {args.split} "
                f"split may hold methods the model trained on, so these scores may not be "
                f"held out",
                file=sys.stderr,
            )
    if data.skipped:
        print(f"{data.name}: skipped {data.skipped} rows whose code does not parse")
    print(format_table(report_rows(reports)))
    if args.out:
        out = Path(args.out)
        write_results(out, evaluations[0][1])
        report = dict(reports[0])
        if args.compare:
            write_results(out / "compare", evaluations[1][1])
            report["compare"] = {key: reports[1][key] for key in ("model", "same_corpus", "modes")}
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote predictions, references and metrics.json to {out}")
    return 0


def _score_command(args: argparse.Namespace) -> int:
    try:
        predictions, references = read_lines(args.predictions), read_lines(args.references)
        metrics = score_texts(predictions, references)
    except (ValueError, OSError) as error:
        print(f"codemt score: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_table([("-", Path(args.predictions).name, metrics)]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt evaluate` and `codemt score` to the command line."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a corpus's test split or CodeSearchNet jsonl",
        description="Generate for every example of each mode and report smoothed BLEU-4 "
        "(CodeXGLUE), corpus BLEU, ROUGE, exact match and, for code, the parse rate, with "
        "trivial docstring baselines beside them.",
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint or run folder, or 'default'")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a corpus folder (its --split is used) or a CodeSearchNet/CodeXGLUE jsonl file",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        metavar="MODE",
        help="targets (docstring, body, signature) or full modes such as body->docstring "
        "(default: docstring, body, signature; jsonl: docstring, body)",
    )
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="N examples per mode")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write files here")
    parser.add_argument("--compare", metavar="MODEL2", help="a second model to show beside")
    parser.add_argument(
        "--memory",
        choices=MEMORIES,
        default="none",
        help="none: each method alone (CodeXGLUE's protocol, the default); repo: each with "
        "its neighbours among the other methods of its repository in the data "
        "(leave-one-out), as project memory gives them, for a model trained to read them",
    )
    parser.add_argument(
        "--beams",
        type=int,
        default=None,
        metavar="N",
        help=BEAMS_HELP,
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    add_decoding_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, metavar="N")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    add_backend_argument(parser)
    parser.set_defaults(func=_evaluate_command)

    score = subparsers.add_parser(
        "score",
        help="score a file of predictions against references",
        description="Score predictions (one per line, newlines escaped as `codemt evaluate` "
        "writes them) against references with the metrics of `codemt evaluate`.",
    )
    score.add_argument("--predictions", type=Path, required=True, metavar="FILE")
    score.add_argument("--references", type=Path, required=True, metavar="FILE")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(func=_score_command)
