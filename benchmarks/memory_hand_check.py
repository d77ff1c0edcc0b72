"""Hand-check material for project memory on the corpus's test split.

20 docstrings and 10 bodies drawn at random (seed 7) from the test split, written by the
model alone and with the memory of their own repository (the split's other methods);
the JSON written holds them beside the references and the nearest neighbour's summary,
to be judged by hand (the model card's "Hand checks").

    python benchmarks/memory_hand_check.py --model default --corpus data/corpus --out hand.json
"""

from __future__ import annotations

import argparse
import json
import random

from codemt.evaluate import load_data, parse_mode
from codemt.memory import likeness
from codemt.translate import Translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    translator = Translator.load(args.model, backend="torch")
    data = load_data(args.corpus, "test")
    rng = random.Random(args.seed)
    out: dict[str, list] = {"docstring": [], "body": []}
    for target, n in (("docstring", 20), ("body", 10)):
        mode = parse_mode(target)
        chosen = sorted(rng.sample(data.examples(mode), n))
        with_memory = data.with_neighbors(chosen, target, translator.neighbors_wanted(target))
        alone = [{**data.records[i], "neighbors": []} for i in chosen]
        written_alone = translator.translate_batch(alone, target, sources=mode.sources)
        written = translator.translate_batch(with_memory, target, sources=mode.sources)
        for i, record, a, m in zip(chosen, with_memory, written_alone, written, strict=True):
            out[target].append(
                {
                    "repo": record["repo"],
                    "name": record["name"],
                    "signature": record["signature"],
                    "reference": data.references[i][target][:600],
                    "nearest": [n.docstring for n in record["neighbors"]][:1],
                    # Docstrings: below `least_likeness`, written alone.
                    "likeness": max(
                        (round(likeness(record, n.as_record()), 3) for n in record["neighbors"]),
                        default=0.0,
                    )
                    if target == "docstring"
                    else None,
                    "alone": a.text[:600],
                    "memory": m.text[:600],
                    "parsed": [a.parsed, m.parsed],
                }
            )
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump(out, file, indent=1)


if __name__ == "__main__":
    main()
