"""Docstring writing speed: functions documented per second by `codemt docstring --write`.

A `small` model with random weights (speed does not depend on what the weights learned)
documents every function of a standard-library package copied into a temporary folder
(`--overwrite`, so functions that have a docstring are redone too). Random weights hardly
ever emit </s>, so each docstring runs the full `--max-new-tokens`. Rows:

    model alone          `translate_batch` over the same functions: the baseline
    --write, summary     the whole command: discovery, parsing, one batched generation
                         across files, libcst insertion, AST verification, atomic writes
    --write, google      as above, with a second generation pass for the descriptions
    --check              discovery and parsing only (no model)

The ratio column compares each row's functions per second with the model alone, measured
in the same run: what the pipeline around the model costs.

    python benchmarks/docstring_speed.py [--package email] [--max-new-tokens 24] [--beams 1]
"""

from __future__ import annotations

import argparse
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
from translate_speed import random_model  # the sibling benchmark's random `small` checkpoint

from codemt.generation import GenerationSettings
from codemt.source.files import find_files
from codemt.translate import Translator
from codemt.write.apply import read_source
from codemt.write.docstring import DocstringSettings, document

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def copy_package(name: str, folder: Path) -> Path:
    """A fresh copy of a standard-library package (without caches) in `folder`."""
    target = folder / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(STDLIB / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def timed_document(package: Path, style: str, mode: str, translator: Translator) -> float:
    """Functions documented (checked, in check mode) per second by one `document` run."""
    settings = DocstringSettings(style=style, overwrite=True)
    t0 = time.perf_counter()
    report = document([package], settings, mode, lambda: translator)
    elapsed = time.perf_counter() - t0
    assert not report.errors, report.errors
    handled = len(report.missing) + report.already if mode == "check" else report.documented
    return handled / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", default="email", help="standard-library package to document")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--beams", type=int, default=1, help="beam width (1: greedy)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    parser.add_argument(
        "--tokenizer-files", type=int, default=400, help="stdlib files to train the BPE on"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generation = GenerationSettings(
        num_beams=args.beams, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vocab = random_model(folder / "model-src", args.tokenizer_files)
        translator = Translator.load(
            folder / "model-src" / "model", settings=generation, device="cpu"
        )
        package = copy_package(args.package, folder)
        files = find_files([package])
        records = [f.record for path in files for f in read_source(path).functions]
        print(
            f"preset small (random weights, vocabulary {vocab}), stdlib {args.package}/: "
            f"{len(files)} files, {len(records)} functions; {args.max_new_tokens} new tokens, "
            f"beam {args.beams}, batch {args.batch_size}, {args.threads} thread(s), device cpu"
        )
        translator.translate_batch(records[:2], "docstring")  # warm-up: first calls allocate

        t0 = time.perf_counter()
        translator.translate_batch(records, "docstring", "summary")
        rows = [("model alone", len(records) / (time.perf_counter() - t0))]
        for style, mode in (("summary", "write"), ("google", "write"), ("summary", "check")):
            package = copy_package(args.package, folder)
            rate = timed_document(package, style, mode, translator)
            rows.append((f"--{mode}, {style}" if mode == "write" else "--check", rate))

    baseline = rows[0][1]
    print(f"{'configuration':<20} {'functions/s':>12} {'ratio':>7}")
    for name, rate in rows:
        print(f"{name:<20} {rate:>12.2f} {rate / baseline:>6.2f}x")


if __name__ == "__main__":
    main()
