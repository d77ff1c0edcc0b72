"""Docstrings of packages outside the training corpus, with and without project memory.

The shipped model is scored where users meet it: on whole packages it never saw. Each
package's wheel is fetched from the package index (pure-Python wheels hold the sources
with their docstrings), unpacked into a folder of its own, and mined into one corpus whose
methods all go to the test split, a package a repository. `codemt evaluate` then writes
every documented method's summary alone and with its project memory (its neighbours
among the package's other documented methods, leave-one-out), beside the
`nearest_docstring` baseline (the top neighbour's summary as the answer).

    python benchmarks/memory_outside_packages.py OUT [--model default] [--packages ...]

Prints one table (smoothed BLEU-4 / ROUGE-L F) and writes OUT/metrics.json. Needs the
package index (pip) and the packages not to be in the corpus the model was trained on:
the default list is of packages absent from the shipped model's corpus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from codemt.evaluate import evaluate, load_data, parse_mode
from codemt.mine.pipeline import mine
from codemt.mine.settings import MineSettings
from codemt.translate import Translator

PACKAGES = [
    "arrow", "bidict", "boltons", "funcy", "glom",
    "inflect", "marshmallow", "natsort", "pydash", "structlog",
]  # fmt: skip


def unpacked(packages: list[str], out: Path) -> list[Path]:
    """Each package's newest pure-Python wheel, unpacked into OUT/packages/NAME."""
    wheels = out / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "--quiet", "--dest", str(wheels), *packages],
        check=True,
    )  # fmt: skip
    folders = []
    for name in packages:
        wanted = name.replace("-", "_").lower()
        wheel = next(w for w in wheels.glob("*.whl") if w.name.lower().startswith(wanted + "-"))
        folder = out / "packages" / name
        if not folder.is_dir():
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if ".dist-info/" not in m]
                archive.extractall(folder, members)
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--packages", nargs="+", default=PACKAGES)
    args = parser.parse_args()

    folders = unpacked(args.packages, args.out)
    corpus = args.out / "corpus"
    settings = MineSettings(split_ratios=(0.0, 0.0, 1.0), progress=False)
    mine([str(f) for f in folders], corpus, settings)
    data = load_data(corpus, "test")
    translator = Translator.load(args.model)
    reports = {
        memory: evaluate(translator, data, [parse_mode("docstring")], memory=memory)[0]
        for memory in ("repo", "none")
    }
    (args.out / "metrics.json").write_text(json.dumps(reports, indent=1))

    def cells(metrics: dict[str, float]) -> str:
        return f"{metrics['smoothed_bleu4']:.2f} / {metrics['rougeL_f']:.2f}"

    docstrings = {m: r["modes"]["docstring"] for m, r in reports.items()}
    print(f"{len(args.packages)} packages, {docstrings['repo']['n']} docstrings, "
          f"model {args.model} ({translator.backend.name})")  # fmt: skip
    print("| | smoothed BLEU-4 / ROUGE-L F |\n|---|---|")
    print(f"| with project memory | {cells(docstrings['repo'])} |")
    print(f"| alone | {cells(docstrings['none'])} |")
    print(
        f"| `nearest_docstring` | {cells(reports['none']['baselines']['docstring']['nearest_docstring'])} |"
    )


if __name__ == "__main__":
    main()
