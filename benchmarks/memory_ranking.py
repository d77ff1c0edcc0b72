"""How docstrings written with project memory are chosen: candidates dumped once, rules replayed.

With memory a docstring is chosen among what the model writes and the summaries of the
most alike neighbours (`GenerationSettings`: `memory_name_weight`, `neighbor_likeness`,
`neighbor_bonus`, `offered_neighbors`). Generating is the slow part and does not depend
on those weights, so `dump` writes every candidate once (its score, its name coverage, and
each method's neighbours) and `replay` scores the choice each rule would make, in
seconds, as `codemt evaluate --memory repo` would (smoothed BLEU-4 / ROUGE-L F):

    python benchmarks/memory_ranking.py dump --data data/corpus --split valid --limit 1500 \\
        --out valid.json
    python benchmarks/memory_ranking.py replay valid.json test.json

Choose weights on a validation split and read the others as held out (docs/experiments.md).
`replay --gates 0 0.1 ...` scores the shipped rule with each `least_likeness` instead: a
method none of whose neighbours is alike enough takes the model's alone beams, which
`dump` writes too (a dump made before it did is replayed without the gate).
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from typing import Any

from codemt.evaluate import load_data, parse_mode
from codemt.generation import GenerationSettings, method_name_words, name_coverage
from codemt.metrics import rouge, smoothed_bleu4
from codemt.translate import FINISHERS, Translator, alike_enough, offered_summaries

WIDEST = 5  # neighbours looked up: replay can offer the summaries of 1 to this many
TRAINED = 3  # the neighbours the shipped model was trained to read


def dump(args: argparse.Namespace) -> None:
    translator = Translator.load(args.model, backend="torch")
    data = load_data(args.data, args.split)
    mode = parse_mode("docstring")
    chosen = data.examples(mode, args.limit)
    records = data.with_neighbors(chosen, "docstring", WIDEST)
    # Every row with its neighbours (no gate: `replay` applies `least_likeness` itself).
    settings = replace(GenerationSettings(), offered_neighbors=WIDEST, least_likeness=0.0)
    settings = settings.for_target("docstring")
    read = translator.neighbors_read(settings)
    found = [translator.neighbors_of(r, "docstring", settings=settings) for r in records]
    inputs = translator.encode(
        records, "docstring", sources=mode.sources, neighbors=[f[:read] for f in found]
    )
    by_itself = translator.encode(
        records, "docstring", sources=mode.sources, neighbors=[[] for _ in records]
    )
    offered = translator._offered(records, found, "docstring", None, settings)
    rows: list[dict[str, Any]] = [{} for _ in records]
    for start in range(0, len(records), settings.batch_size):
        batch = range(start, min(start + settings.batch_size, len(records)))
        for group in ([i for i in batch if offered[i]], [i for i in batch if not offered[i]]):
            if not group:
                continue
            chosen_settings = settings.with_offered_summaries() if offered[group[0]] else settings
            generated = translator._generate(
                [inputs[i] for i in group], chosen_settings.candidates, chosen_settings, words=True
            )
            texts = [[text for text, _ in offered[i]] for i in group]
            scored = translator._scored([inputs[i] for i in group], texts)
            # The same methods written alone (no neighbours read, the alone beams), for the
            # rules that fall back to the model alone (`replay --gates`).
            alone = translator._generate(
                [by_itself[i] for i in group], settings.candidates, settings, words=True
            )
            for i, sequences, own, apart in zip(group, generated, scored, alone, strict=True):
                words = method_name_words(records[i])
                written = [(FINISHERS["docstring"](t), s) for t, s in sequences]
                rows[i] = {
                    "reference": data.references[chosen[i]]["docstring"],
                    "name": records[i].get("name", ""),
                    "signature": records[i].get("signature", ""),
                    "body": records[i].get("body", ""),
                    "neighbors": found[i],
                    "written": [[t, s, name_coverage(words, t)] for t, s in written],
                    "offered": [[t, s, name_coverage(words, t)] for t, s in own],
                    "alone": [
                        [FINISHERS["docstring"](t), s, name_coverage(words, t)] for t, s in apart
                    ],
                }
        print(f"{batch.stop} of {len(records)}", flush=True)
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump(rows, file)


def offers_of(
    row: dict[str, Any], settings: GenerationSettings
) -> list[tuple[str, float, float, float]]:
    """The dumped summaries of the first `settings.offered_neighbors` neighbours: (text,
    score, coverage, bonus), the bonus as `translate_batch` gives it."""
    record = {k: row[k] for k in ("name", "signature", "body")}
    neighbors = row["neighbors"][: settings.offered_neighbors]
    bonuses = dict(offered_summaries(record, neighbors, settings))
    return [(t, s, c, bonuses[t]) for t, s, c in row["offered"] if t in bonuses]


def looked_up(row: dict[str, Any], rule: GenerationSettings) -> list[dict[str, Any]]:
    """The dumped neighbours `translate_batch` looks the method up with under `rule`
    (`Translator.neighbors_wanted`)."""
    read = TRAINED if rule.neighbors is None else min(rule.neighbors, TRAINED)
    return row["neighbors"][: max(read, rule.offered_neighbors)]


def written_alone(row: dict[str, Any], rule: GenerationSettings) -> bool:
    """Whether `translate_batch` writes the method alone under `rule` (`alike_enough`); never
    for a dump without the alone candidates (made before they were dumped)."""
    record = {k: row[k] for k in ("name", "signature", "body")}
    return "alone" in row and not alike_enough(record, looked_up(row, rule), rule)


def chosen(row: dict[str, Any], rule: GenerationSettings) -> str:
    """The docstring `translate_batch` chooses under `rule`, from the dumped candidates:
    written alone where no neighbour is alike enough, else the best of what the model
    wrote with memory and the neighbours' summaries."""
    if written_alone(row, rule):
        return max(row["alone"], key=lambda c: c[1] + rule.name_weight * c[2])[0]
    offers = offers_of(row, rule)
    # Names weigh `memory_name_weight` where summaries are offered, `name_weight` elsewhere.
    weight = rule.memory_name_weight if offers else rule.name_weight
    candidates = [(t, s + weight * c) for t, s, c in row["written"]]
    candidates += [(t, s + weight * c + bonus) for t, s, c, bonus in offers]
    return max(candidates, key=lambda c: c[1])[0]


def scored(predictions: list[str], rows: list[dict[str, Any]]) -> str:
    """Smoothed BLEU-4 / ROUGE-L F of the predictions against the rows' references."""
    references = [row["reference"] for row in rows]
    bleu = smoothed_bleu4(predictions, references)
    return f"{bleu:6.2f} / {rouge(predictions, references)['rougeL_f']:5.2f}"


def replay_gates(sets: dict[str, list[dict[str, Any]]], gates: list[float]) -> None:
    """The shipped rule with each `least_likeness` in `gates`."""
    print("least_likeness  " + "  ".join(sets) + "  (share written alone)")
    for gate in gates:
        rule = replace(GenerationSettings(), least_likeness=gate)
        scores = []
        for rows in sets.values():
            alone = sum(written_alone(row, rule) for row in rows)
            predictions = [chosen(row, rule) for row in rows]
            scores.append(f"{scored(predictions, rows)} ({alone / len(rows):4.0%})")
        print(f"{gate:14.3f}  " + "  ".join(scores), flush=True)


def replay(args: argparse.Namespace) -> None:
    sets = {}
    for path in args.files:
        with open(path, encoding="utf-8") as file:
            sets[path] = json.load(file)
    if args.gates:
        replay_gates(sets, args.gates)
        return
    shipped = GenerationSettings()
    grid = itertools.product(
        (1, 2, 3, 4, 5), (0.0, 3.0, 6.0, 10.0), (2.0, 4.0, 6.0, 10.0), (0.0, 0.5, 1.0)
    )
    print("offered likeness names adapted  " + "  ".join(sets))
    for offered, alike_weight, name_weight, adapted_bonus in grid:
        rule = replace(
            shipped,
            offered_neighbors=offered,
            neighbor_likeness=alike_weight,
            memory_name_weight=name_weight,
            adapted_bonus=adapted_bonus,
        )
        scores = [scored([chosen(row, rule) for row in rows], rows) for rows in sets.values()]
        print(
            f"{offered:7d} {alike_weight:8.1f} {name_weight:5.1f} {adapted_bonus:7.1f}  "
            + "  ".join(scores)
            + ("  <- shipped" if rule == shipped else ""),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump", help="write every docstring candidate of a data set")
    dumping.add_argument("--model", default="default")
    dumping.add_argument("--data", required=True, help="a corpus folder or a jsonl file")
    dumping.add_argument("--split", default="valid")
    dumping.add_argument("--limit", type=int, default=1500)
    dumping.add_argument("--out", required=True)
    replaying = commands.add_parser("replay", help="score the rules on dumped candidates")
    replaying.add_argument("files", nargs="+")
    replaying.add_argument(
        "--gates", type=float, nargs="+", help="likeness below which a method is written alone"
    )
    args = parser.parse_args()
    dump(args) if args.command == "dump" else replay(args)


if __name__ == "__main__":
    main()
