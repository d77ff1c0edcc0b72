"""Evaluation: the paper's metrics on our corpus's test split or on CodeSearchNet jsonl.

Metrics (in percent, `codemt.metrics`): smoothed BLEU-4, corpus BLEU, ROUGE-1/2/L and exact
match of text, and for code targets:

- `parse_rate` (code targets): generated code that parses with the rest of its method, after
  syntax-aware selection; `top_beam_parse_rate`: the same for the best-scored beam alone.

Beside every docstring evaluation stand two trivial baselines: the function name split into
words (`save act`), and a sentence made of them (`Returns the save act.`); and, where the
methods have a repository, `nearest_docstring`: the summary of the most alike documented
other method of the same repository (`codemt.memory`, leave-one-out).

`memory="repo"` evaluates with project memory as a user's project gives it: each method is
translated with its neighbours among the other methods of its repository in the data
(leave-one-out); "none" (the default) is the standard protocol, each method alone.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemt.corpus import Corpus, iter_records, manifest_path
from codemt.examples import FEATURES, Mode, name_words
from codemt.memory import Memory
from codemt.metrics import score_texts
from codemt.source.docstrings import summary_of
from codemt.translate import parse_method

if TYPE_CHECKING:
    from codemt.translate import Translator

# ------------------------------------------------------------------ baselines


MEMORIES = ("none", "repo")

BASELINES: dict[str, Callable[[str], str]] = {
    "name_words": name_words,
    # A sentence, as summaries are written: the period matters to BLEU (references end in one).
    "returns_name_words": lambda name: f"Returns the {name_words(name)}.",
}


# ------------------------------------------------------------------ evaluation data


@dataclass(frozen=True)
class EvalData:
    """Methods to evaluate on, with each method's reference per target ("": none).

    Docstring references are what the model is asked for in the summary style: the
    docstring's first paragraph (CodeSearchNet jsonl: its `docstring_tokens` joined).
    """

    name: str
    records: list[dict[str, Any]]
    references: list[dict[str, str]]
    skipped: int = 0
    default_targets: tuple[str, ...] = FEATURES
    corpus_digest: str | None = None  # the corpus's (`Corpus.digest`); None for jsonl

    def examples(self, mode: Mode, limit: int | None = None) -> list[int]:
        """Indices of the methods that have the mode's sources and a reference for its target.

        With `limit`, a fixed random sample of that many, in file order: a corpus split is
        stored project by project, and its first methods would all come from a few projects.
        """
        chosen = [
            i
            for i, (record, refs) in enumerate(zip(self.records, self.references, strict=True))
            if refs[mode.target] and all(record.get(f) for f in mode.sources)
        ]
        if limit is None or limit >= len(chosen):
            return chosen
        return sorted(random.Random(0).sample(chosen, limit))

    def with_neighbors(self, chosen: Sequence[int], target: str, k: int) -> list[dict[str, Any]]:
        """The chosen methods' records, each carrying its `k` neighbours among the other
        documented methods of its repository in this data (leave-one-out), for `target`."""
        memories = self._repo_memories
        records = []
        for i in chosen:
            record = self.records[i]
            memory = memories.get(record.get("repo") or "")
            found = memory.neighbors(record, k, target=target) if memory is not None else []
            records.append({**record, "neighbors": found})
        return records

    @cached_property
    def _repo_memories(self) -> dict[str, Any]:
        """A `codemt.memory.Memory` per repository of the data (built once)."""
        by_repo: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            if record.get("repo"):
                by_repo.setdefault(record["repo"], []).append(record)
        return {repo: Memory.from_records(rows) for repo, rows in by_repo.items()}


def load_corpus(corpus: Path, split: str = "test") -> EvalData:
    """A split of our corpus; docstring references only for docstring-task methods."""
    try:
        digest: str | None = Corpus.open(corpus).digest
    except ValueError:  # a damaged manifest: the shards can still be read
        digest = None
    records, references = [], []
    for record in iter_records(corpus, split):
        records.append(record)
        docstring = summary_of(record["docstring"]) if record["docstring_task"] else ""
        references.append(
            {"docstring": docstring, "body": record["body"], "signature": record["signature"]}
        )
    return EvalData(f"{corpus}:{split}", records, references, corpus_digest=digest)


def load_codesearchnet(path: Path) -> EvalData:
    """A CodeSearchNet/CodeXGLUE jsonl file, each row's `code` read by our extractor.

    The extractor separates the docstring, so docstring generation sees the code without
    it, as CodeXGLUE's does; the reference is `' '.join(docstring_tokens)`, as CodeXGLUE
    builds it. Method generation's reference is the extracted body. Rows whose code does not
    parse are skipped and counted.
    """
    records, references = [], []
    skipped = 0
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                record = parse_method(row.get("code") or row["original_string"])
            except ValueError:
                skipped += 1
                continue
            # As the miner reads such rows: the qualified name, and the class it implies.
            name = str(row.get("func_name") or record["name"])
            record["name"] = name
            record["repo"] = str(row.get("repo") or "")
            record["path"] = str(row.get("path") or "")
            if "." in name and not record["class_name"]:
                record["class_name"] = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
            records.append(record)
            references.append(
                {
                    "docstring": " ".join(row.get("docstring_tokens") or []),
                    "body": record["body"],
                    "signature": record["signature"],
                }
            )
    return EvalData(str(path), records, references, skipped, ("docstring", "body"))


def load_data(path: Path, split: str = "test") -> EvalData:
    """A corpus folder (its `split`) or a CodeSearchNet jsonl file."""
    path = Path(path)
    if path.is_dir() and manifest_path(path).is_file():
        return load_corpus(path, split)
    if path.is_file():
        return load_codesearchnet(path)
    raise FileNotFoundError(
        f"{path}: neither a corpus folder (from `codemt mine`) nor a CodeSearchNet jsonl file"
    )


def parse_mode(name: str) -> Mode:
    """A mode by its full name (`signature+body->docstring`) or its target alone."""
    if name in FEATURES:
        return Mode(tuple(f for f in FEATURES if f != name), name)
    return Mode.parse(name)


def mode_key(mode: Mode) -> str:
    """How results name a mode: its target when the sources are all other features."""
    return mode.target if parse_mode(mode.target) == mode else mode.name


# ------------------------------------------------------------------ evaluating a model


@dataclass(frozen=True)
class ModeResult:
    """A model's predictions for one mode, the references and the metrics."""

    key: str
    predictions: list[str]
    references: list[str]
    metrics: dict[str, float]


def evaluate_mode(
    translator: Translator,
    data: EvalData,
    mode: Mode,
    *,
    limit: int | None = None,
    progress: bool = False,
    memory: str = "none",
) -> ModeResult:
    """Generate for every example of `mode` and score against the references; `memory`
    "repo" gives each method its neighbours in its repository (`EvalData.with_neighbors`)."""
    chosen = data.examples(mode, limit)
    if not chosen:
        raise ValueError(f"{data.name}: no method has the features of mode {mode.name}")
    if memory == "repo" and translator.reads_neighbors:
        records = data.with_neighbors(chosen, mode.target, translator.neighbors_wanted(mode.target))
    else:
        records = [{**data.records[i], "neighbors": []} for i in chosen]
    references = [data.references[i][mode.target] for i in chosen]
    t0 = time.perf_counter()
    translations = translator.translate_batch(
        records, mode.target, sources=mode.sources, progress=progress
    )
    elapsed = time.perf_counter() - t0
    predictions = [t.text for t in translations]
    metrics = score_texts(predictions, references)
    if mode.target != "docstring":
        top = [max(t.candidates, key=lambda c: c.score).parsed for t in translations]
        metrics["parse_rate"] = 100 * sum(bool(t.parsed) for t in translations) / len(chosen)
        metrics["top_beam_parse_rate"] = 100 * sum(bool(p) for p in top) / len(chosen)
    metrics["seconds"] = elapsed
    return ModeResult(mode_key(mode), predictions, references, metrics)


def evaluate_baselines(data: EvalData, limit: int | None = None) -> dict[str, dict[str, float]]:
    """The trivial docstring baselines on the docstring examples (empty if there are none)."""
    chosen = data.examples(parse_mode("docstring"), limit)
    if not chosen:
        return {}
    references = [data.references[i]["docstring"] for i in chosen]
    scores = {
        name: score_texts([baseline(data.records[i]["name"]) for i in chosen], references)
        for name, baseline in BASELINES.items()
    }
    if any(data.records[i].get("repo") for i in chosen):
        nearest = [n["neighbors"] for n in data.with_neighbors(chosen, "docstring", 1)]
        scores["nearest_docstring"] = score_texts(
            [found[0].docstring if found else "" for found in nearest], references
        )
    return scores


def same_corpus(translator: Translator, data: EvalData) -> bool | None:
    """Whether `data` comes from the corpus the model was trained on, in every stage, by
    the digests its `codemt.json` records; None when the data is no corpus or the model's
    corpora are not all known (a model started from one that records none). A corpus mined
    again, even from the same sources, is another: its splits may hold the model's training
    methods in their test split."""
    meta = translator.meta
    if data.corpus_digest is None or not meta.get("corpus_digest"):
        return None
    if meta["corpus_digest"] != data.corpus_digest:
        return False
    lineage = meta.get("corpus_digests")
    if lineage is None:
        return None if meta.get("init") else True
    return all(digest == data.corpus_digest for digest in lineage)


def evaluate(
    translator: Translator,
    data: EvalData,
    modes: Sequence[Mode],
    *,
    limit: int | None = None,
    progress: bool = False,
    memory: str = "none",
) -> tuple[dict[str, Any], dict[str, ModeResult]]:
    """Evaluate a model on every mode: the report (`metrics.json`'s shape) and the results.

    `memory`: "none" (each method alone, the standard protocol) or "repo" (with its
    neighbours among the other methods of its repository, leave-one-out)."""
    if memory not in MEMORIES:
        raise ValueError(f"unknown memory {memory!r}; choose one of {', '.join(MEMORIES)}")
    results = {}
    for mode in modes:
        result = evaluate_mode(
            translator, data, mode, limit=limit, progress=progress, memory=memory
        )
        results[result.key] = result
    report = {
        "model": str(translator.path),
        "backend": translator.backend.name,
        "real_words": translator.settings.real_words and translator.has_word_list,
        "num_beams": translator.settings.num_beams,
        "memory_beams": translator.settings.memory_beams,
        "name_weight": translator.settings.name_weight,
        "memory_name_weight": translator.settings.memory_name_weight,
        "neighbors": translator.neighbors_read(),
        "offered_neighbors": translator.settings.offered_neighbors,
        "neighbor_bonus": translator.settings.neighbor_bonus,
        "neighbor_likeness": translator.settings.neighbor_likeness,
        "adapted_bonus": translator.settings.adapted_bonus,
        "least_likeness": translator.settings.least_likeness,
        # What the model read beside each method: "repo" only where it was trained to.
        "memory": memory if translator.reads_neighbors else "none",
        "data": data.name,
        "corpus_digest": data.corpus_digest,
        "same_corpus": same_corpus(translator, data),
        "skipped_rows": data.skipped,
        "modes": {key: result.metrics for key, result in results.items()},
        "baselines": {"docstring": evaluate_baselines(data, limit)},
    }
    return report, results


# ------------------------------------------------------------------ files and tables


def escape_line(text: str) -> str:
    """One text as one line: backslashes and line breaks escaped."""
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def unescape_line(line: str) -> str:
    """The text `escape_line` wrote."""
    return re.sub(r"\\([\\nr])", lambda m: {"\\": "\\", "n": "\n", "r": "\r"}[m[1]], line)


def write_lines(path: Path, texts: Sequence[str]) -> None:
    """Write texts one per line, escaped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(escape_line(t) + "\n" for t in texts), encoding="utf-8")


def read_lines(path: Path) -> list[str]:
    """Read texts written one per line (escaped, as `write_lines` writes them)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":  # the last line's break
        lines.pop()
    return [unescape_line(line) for line in lines]


def result_file_stem(key: str) -> str:
    """A mode's key as a file name that every shell and file system takes:
    `signature+body->docstring` -> `signature+body_to_docstring`."""
    return key.replace("->", "_to_")


def write_results(out_dir: Path, results: dict[str, ModeResult]) -> None:
    """`{mode}.predictions.txt` and `{mode}.references.txt` for every mode."""
    for key, result in results.items():
        write_lines(out_dir / f"{result_file_stem(key)}.predictions.txt", result.predictions)
        write_lines(out_dir / f"{result_file_stem(key)}.references.txt", result.references)


_COLUMNS = (
    ("n", "n", "{:>5.0f}"),
    ("smoothed_bleu4", "sBLEU4", "{:>6.2f}"),
    ("bleu", "BLEU", "{:>6.2f}"),
    ("rouge1_f", "R1-F", "{:>6.2f}"),
    ("rouge2_f", "R2-F", "{:>6.2f}"),
    ("rougeL_f", "RL-F", "{:>6.2f}"),
    ("exact_match", "EM", "{:>6.2f}"),
    ("parse_rate", "parse", "{:>6.1f}"),
    ("top_beam_parse_rate", "top1-parse", "{:>10.1f}"),
    ("seconds", "sec", "{:>7.1f}"),
)


def format_table(rows: Sequence[tuple[str, str, dict[str, float]]]) -> str:
    """A table of (mode, system, metrics) rows; absent metrics are left blank."""
    mode_width = max([4, *(len(r[0]) for r in rows)])
    system_width = max([6, *(len(r[1]) for r in rows)])
    widths = [len(fmt.format(0)) for _, _, fmt in _COLUMNS]
    header = f"{'mode':<{mode_width}}  {'system':<{system_width}}"
    header += "".join(f" {title:>{w}}" for (_, title, _), w in zip(_COLUMNS, widths, strict=True))
    lines = [header]
    for mode, system, metrics in rows:
        line = f"{mode:<{mode_width}}  {system:<{system_width}}"
        for (key, _, fmt), width in zip(_COLUMNS, widths, strict=True):
            line += " " + (fmt.format(metrics[key]) if key in metrics else " " * width)
        lines.append(line)
    return "\n".join(lines)


def report_rows(reports: Sequence[dict[str, Any]]) -> list[tuple[str, str, dict[str, float]]]:
    """Table rows of one or more models' reports, grouped by mode, docstring baselines last."""
    names = [Path(r["model"]).name or r["model"] for r in reports]
    if len(set(names)) < len(names):
        names = [r["model"] for r in reports]
    rows = []
    for key in dict.fromkeys(k for r in reports for k in r["modes"]):
        rows += [(key, n, r["modes"][key]) for n, r in zip(names, reports, strict=True)]
        if parse_mode(key).target == "docstring":
            for baseline, metrics in reports[0]["baselines"]["docstring"].items():
                rows.append((key, f"baseline:{baseline}", metrics))
    return rows
