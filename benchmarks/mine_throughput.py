"""Mining throughput: the whole `codemt mine` pipeline against a bare `ast.parse` + walk.

Both run over the same copy of the standard library's .py files, in one run, so the ratio
holds on a noisy machine. Prints files/s and methods/s for the bare parse (1 process), the
pipeline with 1 worker and with 2 workers, the pipeline's share of the bare throughput per
core, and the 1 -> 2 worker scaling.

    python benchmarks/mine_throughput.py [--limit 800] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from codemt.mine.pipeline import mine
from codemt.mine.settings import MineSettings


def stdlib_files(limit: int | None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not {"site-packages", "dist-packages", "__pycache__"} & set(p.parts)
    )
    return files[:limit] if limit else files


def bare_parse(files: list[Path]) -> tuple[float, int]:
    """Read, parse and walk every file, counting functions; returns (seconds, functions)."""
    t0 = time.perf_counter()
    functions = 0
    for path in files:
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        functions += sum(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree)
        )
    return time.perf_counter() - t0, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N files (default: all)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    files = stdlib_files(args.limit)
    root = Path(sysconfig.get_paths()["stdlib"])
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "stdlib"
        for path in files:
            target = copy / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        copied = sorted(copy.rglob("*.py"))

        elapsed, functions = bare_parse(copied)
        rows = [("bare ast.parse + walk", 1, elapsed, len(copied), functions)]
        for workers in args.workers:
            out = Path(tmp) / f"corpus-{workers}"
            settings = MineSettings(workers=workers, progress=False, cache_dir=Path(tmp) / "cache")
            t0 = time.perf_counter()
            manifest = mine([str(copy)], out, settings)
            elapsed = time.perf_counter() - t0
            rows.append(
                (
                    f"codemt mine, {workers} worker(s)",
                    workers,
                    elapsed,
                    len(copied),
                    manifest["dedup"]["methods_before"],
                )
            )

    base_rate = rows[0][3] / rows[0][2]
    print(f"{len(files)} standard-library files\n")
    print(f"{'run':<28} {'seconds':>8} {'files/s':>8} {'methods/s':>10} {'per core vs bare':>17}")
    for name, workers, elapsed, n_files, methods in rows:
        rate = n_files / elapsed
        print(
            f"{name:<28} {elapsed:>8.1f} {rate:>8.1f} {methods / elapsed:>10.0f} {rate / workers / base_rate:>16.0%}"
        )
    timed = {w: e for _, w, e, *_ in rows[1:]}
    if 1 in timed and 2 in timed:
        print(f"\nscaling 1 -> 2 workers: {timed[1] / timed[2]:.2f}x")


if __name__ == "__main__":
    main()
