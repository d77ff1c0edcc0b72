"""How well the model summarises classes (`codemt docstring --classes`).

Public top-level classes of the standard library that have a docstring: the model writes
a summary from the class as `codemt.write.classes.class_record` shows it, scored against the
first paragraph of the real docstring (smoothed BLEU-4, ROUGE-L F), beside the summary
"A <name words>." made from the class name alone.

    python benchmarks/class_summaries.py [--model default] [--n 80]
"""

from __future__ import annotations

import argparse
import ast
import random
import sysconfig
from pathlib import Path

from codemt.examples import name_words
from codemt.metrics import score_texts
from codemt.source.docstrings import summary_of
from codemt.translate import Translator
from codemt.write.apply import read_source
from codemt.write.classes import class_record, classes_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=80)
    args = parser.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            source = read_source(path)
        except Exception:  # noqa: BLE001 - a file of another Python: skipped
            continue
        top = {id(n) for n in source.tree.body if isinstance(n, ast.ClassDef)}
        found += [k for k in classes_of(source) if k.docstring and k.public and id(k.node) in top]
    random.Random(0).shuffle(found)
    found = found[: args.n]
    references = [summary_of(k.docstring) for k in found]
    translator = Translator.load(args.model)
    written = translator.translate_batch([class_record(k) for k in found], "docstring")
    rows = {
        "model": [w.text for w in written],
        "A <name words>.": [f"A {name_words(k.node.name)}." for k in found],
    }
    print(f"{len(found)} standard-library classes, backend {translator.backend.name}")
    print("| summary | smoothed BLEU-4 | ROUGE-L F |")
    print("|---|---|---|")
    for label, predictions in rows.items():
        scores = score_texts(predictions, references)
        print(f"| {label} | {scores['smoothed_bleu4']:.2f} | {scores['rougeL_f']:.2f} |")


if __name__ == "__main__":
    main()
