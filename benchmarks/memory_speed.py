"""Project memory's cost: building a project's memory, and writing docstrings with it.

A copy of standard-library packages stands for a user's project (about 1,000 documented
functions). Rows:

    build, cold          `ProjectMemory.open` with an empty cache: every file parsed
    build, warm          the same with the cache: every file read and hashed, none parsed
    build, one changed   one file edited since: that file alone parsed again
    one docstring        `translate_batch` of one function (what the language server and
                         `/v1/docstring` run per request), p50 over the functions, warm,
                         with and without memory
    a package            `translate_batch` over every undocumented function (what `codemt
                         docstring` runs), seconds per function, with and without memory

    python benchmarks/memory_speed.py [--model default] [--packages email json http]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

from codemt.generation import GenerationSettings
from codemt.memory import ProjectMemory
from codemt.translate import Translator
from codemt.write.apply import read_source

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def copy_project(packages: list[str], folder: Path) -> Path:
    """Standard-library packages copied into one project folder (with a pyproject.toml)."""
    root = folder / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    for name in packages:
        source = STDLIB / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source.with_suffix(".py"), root / f"{name}.py")
    return root


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--packages", nargs="+", default=["email", "json", "http", "xml"])
    parser.add_argument("--functions", type=int, default=30, help="functions for the p50 row")
    parser.add_argument("--package-limit", type=int, default=150, help="functions for the last row")
    args = parser.parse_args()

    translator = Translator.load(args.model, backend=args.backend)
    settings = GenerationSettings()
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(args.packages, Path(tmp))
        cache = Path(tmp) / "cache"
        memory, cold = timed(lambda: ProjectMemory.open(root, cache_dir=cache))
        size = len(memory)  # the index is built on first use: part of the cold cost
        _, warm = timed(lambda: len(ProjectMemory.open(root, cache_dir=cache)))
        changed = next(root.rglob("*.py"))
        changed.write_text(changed.read_text() + "\n\ndef added():\n    '''Added.'''\n")
        _, one = timed(lambda: len(ProjectMemory.open(root, cache_dir=cache)))
        files = sorted(root.rglob("*.py"))
        print(
            f"project: {len(files)} files, {size} documented functions ({', '.join(args.packages)})"
        )
        print(f"build, cold: {cold:.2f} s; warm: {warm:.2f} s; one file changed: {one:.2f} s")

        functions = [
            f.record for path in files for f in read_source(path).functions if f.lines >= 3
        ]
        documented = [r for r in functions if r["docstring"]]
        undocumented = [r for r in functions if not r["docstring"]]
        # The documented ones as if they had none: their own docstring is no source.
        picked = [
            {**r, "docstring": ""} for r in documented[:: max(len(documented) // args.functions, 1)]
        ]
        picked = picked[: args.functions]
        rows = []
        for label, used in (("without memory", None), ("with memory", memory)):
            translator.translate_batch(picked[:2], "docstring", settings=settings, memory=used)
            latencies = []
            for record in picked:
                record = record if used is not None else {**record, "neighbors": []}
                _, seconds = timed(
                    lambda r=record, m=used: translator.translate_batch(
                        [r], "docstring", settings=settings, memory=m
                    )
                )
                latencies.append(seconds)
            batch = undocumented[: args.package_limit] or picked
            batch = batch if used is not None else [{**r, "neighbors": []} for r in batch]
            _, total = timed(
                lambda b=batch, m=used: translator.translate_batch(
                    b, "docstring", settings=settings, memory=m
                )
            )
            rows.append((label, statistics.median(latencies), total / len(batch)))
        print(
            f"model: {translator.path} ({translator.backend.name}), reads neighbours: "
            f"{translator.reads_neighbors}"
        )
        print("| | one docstring, p50 | a package, s per function |")
        print("|---|---|---|")
        for label, p50, per in rows:
            print(f"| {label} | {1000 * p50:.0f} ms | {per:.3f} |")


if __name__ == "__main__":
    main()
