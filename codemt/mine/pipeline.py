"""`codemt mine`: sources in, a de-duplicated, split method corpus out; `mine` runs it.

The work is done in two phases so a long run can stop and resume:

1. Stage (`staging`): every source is resolved into repositories, its files are read,
   repaired, parsed and turned into method records on all cores (or, with `--engine ray`,
   by the workers of a Ray cluster: `cluster`); the records of a source,
   with their de-duplication keys, are written to `DIR/.work/staged/` and the source is
   marked done. A rerun with the same `--out` skips sources already done.
2. Finish: the staged records of the sources asked for are de-duplicated globally (across
   sources and shards) and split by repository (`selection`), and written as Parquet
   shards (`shards`) with a manifest; the greedy passes over the groups of methods
   linked by shared keys and the shards are independent tasks, run by the cluster's
   workers with `--engine ray` (the shards on threads here otherwise). This phase is
   rerun each time; it replaces the previous shards atomically.

What cannot be read is skipped at the smallest unit (a folder, the damaged end of an
archive or jsonl file, a file, a jsonl row, a method) and the run goes on. Every skip is
counted in the manifest's `counts` under `<unit>_skipped:<reason>`. Each source's first
`records.MAX_LISTED_SKIPS` skips met while reading it are also listed in its `skipped` entry with
where and why (files left out while discovering it, as too large or links, are counted
only), and parts larger than a file (`parts_skipped:...`) are reported on stderr.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from codemt import __version__
from codemt.corpus import SPLITS, manifest_path, shard_dir
from codemt.mine.cluster import greedy_parts, ray_session, runner, stage_on_ray
from codemt.mine.csn import write_codesearchnet
from codemt.mine.selection import Runner, assign_splits, deduplicate, in_threads, run_here
from codemt.mine.settings import MineSettings
from codemt.mine.shards import MAX_THREADS as MAX_SHARD_THREADS
from codemt.mine.shards import write_shards
from codemt.mine.sources import expand_sources
from codemt.mine.staging import Stage, check_excluded, stage_sources
from codemt.source import reading


def mine(sources: Sequence[str], out: Path, settings: MineSettings | None = None) -> dict:
    """Mine `sources` into a corpus at `out`; returns the manifest (also written to disk)."""
    with reading.rare_collections():
        return _mine(sources, out, settings)


@dataclass(frozen=True)
class _Engine:
    """What does the work of a run: `stage` stages the sources, `dedup` runs the greedy
    de-duplication's parts, `parts` says how many parts it is cut into (asked when it
    runs), `write` writes the shards."""

    stage: Callable
    dedup: Runner
    parts: Callable[[], int]
    write: Runner


@contextmanager
def _engine(settings: MineSettings) -> Iterator[_Engine]:
    """This machine's worker processes for staging, one greedy pass here and the shards
    on as many threads as workers (at most `shards.MAX_THREADS`); or a Ray cluster's
    workers for all three."""
    if settings.engine != "ray":
        write = in_threads(min(settings.workers, MAX_SHARD_THREADS))
        yield _Engine(stage_sources, run_here, lambda: 1, write)
        return
    with ray_session(settings) as ray:
        yield _Engine(
            partial(stage_on_ray, ray),
            runner(ray, "de-duplicating"),
            partial(greedy_parts, ray),
            runner(ray, "writing the shards"),
        )


def _mine(sources: Sequence[str], out: Path, settings: MineSettings | None) -> dict:
    settings = settings or MineSettings()
    out = Path(out).absolute()  # the shards' tasks may run on other machines
    t0 = time.perf_counter()
    specs = expand_sources(list(sources))
    if not specs:
        raise ValueError(
            "no sources given; pass directories, git URLs, archives, list files or python:stdlib"
        )
    excluded = expand_sources(list(settings.exclude)) if settings.exclude else []
    stage = Stage(out, settings)
    already = [spec for spec in [*specs, *excluded] if stage.is_done(spec)]
    with _engine(settings) as engine:
        engine.stage([*specs, *excluded], stage, settings)
        check_excluded(excluded, stage)
        paths = [stage.records_path(s) for s in specs]
        masks, removed, kept = deduplicate(
            paths,
            settings,
            [stage.records_path(s) for s in excluded],
            run=engine.dedup,
            tasks=engine.parts(),
        )
        splits = assign_splits(kept, settings.split_ratios, settings.split_by)
        split_stats = write_shards(paths, masks, splits, out, settings, run=engine.write)
    statuses = [stage.status(s) for s in specs]
    counts: Counter = Counter()
    for status in statuses:
        counts.update(status["counts"])
    manifest = {
        "codemt_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": [
            {
                "source": status["source"],
                "resumed": status["source"] in already,
                "repos": status["counts"].get("repos", 0),
                "methods": status["counts"].get("methods", 0),
                "failures": status["failures"],
                "skipped": status["skipped"],
            }
            for status in statuses
        ],
        "settings": {
            "max_file_bytes": settings.max_file_bytes,
            "max_parse_tokens": settings.max_parse_tokens,
            "repair": settings.repair,
            "filters": asdict(settings.filters),
            "dedup": asdict(settings.dedup),
            "split_ratios": list(settings.split_ratios),
            "split_by": settings.split_by,
            "shard_rows": settings.shard_rows,
            "exclude": [_excluded_source(spec, stage) for spec in excluded],
        },
        "counts": dict(sorted(counts.items())),
        "dedup": {
            "methods_before": int(sum(len(m) for m in masks)),
            "exact_duplicates": removed["exact_duplicate"],
            "near_duplicates": removed["near_duplicate"],
            "excluded": removed["excluded"],
            "methods_after": int(sum(int(m.sum()) for m in masks)),
        },
        "splits": {
            split: {
                key: split_stats[f"{split}:{key}"]
                for key in ("repos", "methods", "with_docstring", "docstring_task")
            }
            for split in SPLITS
        },
        "shards": sorted(p.name for p in shard_dir(out).glob("*.parquet")),
        "elapsed_seconds": None,
    }
    if settings.jsonl:
        manifest["jsonl"] = write_codesearchnet(out)
    manifest["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
    manifest = _printable_values(manifest)
    tmp = manifest_path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path(out))
    return manifest


def _excluded_source(spec: str, stage: Stage) -> dict:
    """How the manifest records an excluded source: as given, its methods, and for a file
    its SHA-256, by which `codemt recipe` recognises its benchmark wherever it lies."""
    path = Path(spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {
        "source": spec,
        "methods": stage.status(spec)["counts"].get("methods", 0),
        "sha256": digest,
    }


def _printable_values(value: object) -> object:
    """`value` with every string in it made printable (sources and messages may name paths
    that are not UTF-8), so that the manifest and the report can be written anywhere."""
    if isinstance(value, str):
        return reading.printable(value)
    if isinstance(value, dict):
        return {reading.printable(k): _printable_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_values(item) for item in value]
    return value


def format_report(manifest: dict) -> str:
    """A human-readable summary of a mining run."""
    counts = manifest["counts"]
    dedup = manifest["dedup"]
    lines = [
        f"sources: {len(manifest['sources'])} "
        f"({sum(s['resumed'] for s in manifest['sources'])} already done), "
        f"repositories: {counts.get('repos', 0)}",
        f"files: {counts.get('files_seen', 0)} seen, {counts.get('files_parsed', 0)} parsed "
        f"({counts.get('files:' + reading.REPAIRED_WHITESPACE, 0)} after whitespace repair, "
        f"{counts.get('files:' + reading.REPAIRED_PY2, 0)} after Python 2 conversion)",
    ]
    if counts.get("jsonl_rows"):
        lines.append(f"jsonl rows: {counts['jsonl_rows']}, parsed {counts.get('rows_parsed', 0)}")
    skipped: Counter = Counter()
    for key, number in counts.items():
        unit, _, reason = key.partition("_skipped:")
        if reason and unit:
            skipped[reason] += number
    if skipped:
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    failures = [f for s in manifest["sources"] for f in s["failures"]]
    if failures:
        lines.append(f"failed sources: {len(failures)}")
        lines.extend(f"  {f['source']}: {f['message']}" for f in failures[:10])
    lines.append(
        f"methods: {dedup['methods_before']} extracted, {dedup['exact_duplicates']} exact and "
        f"{dedup['near_duplicates']} near duplicates removed, {dedup['methods_after']} kept"
    )
    if manifest["settings"].get("exclude"):
        lines.append(
            f"excluded: {dedup['excluded']} methods removed as copies of those of "
            + ", ".join(source["source"] for source in manifest["settings"]["exclude"])
        )
    excluded = {
        k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("docstring_task_excluded:")
    }
    if excluded:
        lines.append(
            "not used for docstring generation (before dedup): "
            + ", ".join(f"{k} {v}" for k, v in sorted(excluded.items()))
        )
    lines.append(f"{'split':<6} {'repos':>7} {'methods':>9} {'with doc':>9} {'doc task':>9}")
    for split, row in manifest["splits"].items():
        lines.append(
            f"{split:<6} {row['repos']:>7} {row['methods']:>9} {row['with_docstring']:>9} {row['docstring_task']:>9}"
        )
    lines.append(f"elapsed: {manifest['elapsed_seconds']} s")
    return "\n".join(lines)
