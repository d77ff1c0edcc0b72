"""`codemt mine`: the command line of the corpus miner."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from codemt.mine.dedup import DedupSettings
from codemt.mine.pipeline import format_report, mine
from codemt.mine.settings import ENGINES, FilterSettings, MineSettings
from codemt.mine.staging import MiningStopped
from codemt.source.reading import MAX_PARSE_TOKENS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `mine` sub-command."""
    parser = subparsers.add_parser(
        "mine",
        help="mine Python methods from repositories into a corpus",
        description=(
            "Mine every function and method of the given sources into a de-duplicated corpus "
            "of Parquet shards split by repository. SOURCE may be a directory, a git URL or "
            "bare repository, an archive (.tar.gz, .zip, .whl, sdist), a file listing sources "
            "one per line, a CodeSearchNet .jsonl file, python:stdlib or python:site-packages. "
            "Rerunning with the same --out skips sources already mined."
        ),
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument("--out", required=True, type=Path, help="output corpus directory")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--format",
        choices=["parquet", "jsonl"],
        default="parquet",
        help="jsonl also writes CodeSearchNet-schema jsonl files beside the shards",
    )
    parser.add_argument("--max-file-bytes", type=int, default=1_000_000, help="skip larger files")
    parser.add_argument(
        "--max-parse-tokens",
        type=int,
        default=MAX_PARSE_TOKENS,
        help="skip files and jsonl rows of more tokens (words, symbols, line ends) without "
        f"parsing them: a parse costs about 1 KB of memory a token (default {MAX_PARSE_TOKENS:,})",
    )
    parser.add_argument(
        "--no-repair", action="store_true", help="skip whitespace and Python 2 repairs"
    )
    parser.add_argument("--no-dedup", action="store_true", help="keep duplicates")
    parser.add_argument("--no-near-dedup", action="store_true", help="exact de-duplication only")
    parser.add_argument(
        "--near-threshold", type=float, default=0.8, help="MinHash LSH Jaccard threshold"
    )
    parser.add_argument(
        "--split", default="0.8,0.1,0.1", help="train,valid,test ratios (default 0.8,0.1,0.1)"
    )
    parser.add_argument(
        "--split-by",
        choices=["methods", "repos"],
        default="methods",
        help="make the ratios hold for method counts (default) or repository counts; "
        "a repository is always whole in one split, and by methods one larger than half a "
        "held-out share trains while the others can fill the held-out shares",
    )
    parser.add_argument(
        "--min-lines",
        type=int,
        default=3,
        help="docstring task: drop functions of fewer lines (CodeSearchNet: 3)",
    )
    parser.add_argument(
        "--keep-dunder", action="store_true", help="docstring task: keep __dunder__ methods"
    )
    parser.add_argument(
        "--keep-tests", action="store_true", help="docstring task: keep names containing 'test'"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "codemt",
        help="where git clones and extracted archives are kept",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SOURCE",
        help="keep this source's methods and every exact or near copy of them out of the "
        "corpus (evaluation data, e.g. a CodeSearchNet .jsonl file); repeatable",
    )
    parser.add_argument("--shard-rows", type=int, default=100_000, help="rows per Parquet shard")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="where sources are mined: this machine's processes (default), or the workers of "
        "a Ray cluster, a source a task, with --out on a folder every node sees "
        "(pip install 'codemt[ray]'; docs/mining.md)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: the cluster to join ('auto' for the one this machine belongs "
        "to, HOST:PORT, ray://HOST:10001); default RAY_ADDRESS, else a new Ray instance on "
        "this machine with --workers CPUs",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `codemt mine` from parsed arguments."""
    try:
        ratios = tuple(float(x) for x in args.split.split(","))
    except ValueError:
        raise SystemExit(
            f"--split: expected three numbers like 0.8,0.1,0.1, got {args.split!r}"
        ) from None
    try:
        settings = MineSettings(
            workers=args.workers,
            max_file_bytes=args.max_file_bytes,
            max_parse_tokens=args.max_parse_tokens,
            repair=not args.no_repair,
            filters=FilterSettings(
                skip_dunder=not args.keep_dunder,
                skip_test_names=not args.keep_tests,
                min_lines=args.min_lines,
            ),
            dedup=DedupSettings(
                exact=not args.no_dedup,
                near=not (args.no_dedup or args.no_near_dedup),
                threshold=args.near_threshold,
            ),
            split_ratios=ratios,
            split_by=args.split_by,
            shard_rows=args.shard_rows,
            jsonl=args.format == "jsonl",
            cache_dir=args.cache_dir,
            progress=not args.quiet,
            exclude=tuple(args.exclude),
            engine=args.engine,
            ray_address=args.ray_address,
        )
        manifest = mine(args.sources, args.out, settings)
    except (ValueError, MiningStopped) as exc:
        raise SystemExit(f"codemt mine: {exc}") from None
    except OSError as exc:  # a full disk, a folder that cannot be written
        raise SystemExit(
            f"codemt mine: {exc}; the shards of {args.out} are replaced only once the new ones "
            "are written whole, and the sources mined until then are kept: make room (or fix "
            "the permission) and rerun the same command to resume"
        ) from None
    print(format_report(manifest))
    print(f"corpus written to {args.out} (manifest: {args.out / 'manifest.json'})")
    return 0
