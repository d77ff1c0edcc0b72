"""`codemt mine`: sources in, a de-duplicated, split method corpus out.

The work is done in two phases so a long run can stop and resume:

1. Stage: every source is resolved into repositories, its files are read, repaired,
   parsed and turned into method records on all cores; the records of a source, with
   their de-duplication keys, are written to `DIR/.work/staged/` and the source is marked
   done. A rerun with the same `--out` skips sources already done.
2. Finish: the staged records of the sources asked for are de-duplicated globally (across
   sources and shards), split by repository, and written as Parquet shards with a
   manifest. This phase is rerun each time; it replaces the previous shards atomically.

What cannot be read is skipped at the smallest unit (a folder, the damaged end of an
archive or jsonl file, a file, a jsonl row, a method) and the run goes on. Every skip is
counted in the manifest's `counts` under `<unit>_skipped:<reason>`. Each source's first
`MAX_LISTED_SKIPS` skips met while reading it are also listed in its `skipped` entry with
where and why (files left out while discovering it, as too large or links, are counted
only), and parts larger than a file (`parts_skipped:...`) are reported on stderr.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import math
import os
import shutil
import sys
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codemt import __version__
from codemt.corpus import SCHEMA, SPLITS, manifest_path, shard_dir
from codemt.mine.dedup import (
    Deduplicator,
    DedupSettings,
    band_keys_batch,
    code_tokens,
    exact_key,
    local_names,
)
from codemt.mine.sources import (
    JsonlSource,
    Repository,
    Skip,
    SourceFailure,
    expand_sources,
    resolve,
)
from codemt.source import reading
from codemt.source.extract import extract_methods

STAGED_SCHEMA = SCHEMA.append(pa.field("exact_key", pa.int64())).append(
    pa.field("band_keys", pa.list_(pa.int64()))
)
# Bump when staged records or their dedup keys change meaning, so stale stages are redone.
STAGE_FORMAT = 4
FILES_PER_TASK = 16
JSONL_ROWS_PER_TASK = 512
MAX_LISTED_SKIPS = 100  # per source in the manifest; the counts hold every skip
MAX_LINENO = 2**31 - 1  # line numbers are stored as int32


@dataclass(frozen=True)
class FilterSettings:
    """CodeSearchNet's filters; they decide the `docstring_task` column, never drop a method."""

    skip_dunder: bool = True
    skip_test_names: bool = True
    min_lines: int = 3  # functions of fewer lines (signature + body) are too trivial to describe
    min_docstring_words: int = 3

    def __post_init__(self) -> None:
        if self.min_lines < 0 or self.min_docstring_words < 0:
            raise ValueError("min_lines and min_docstring_words must not be negative")

    def exclusion(self, record: dict) -> str | None:
        """Why a method is not used for docstring generation, or None if it is."""
        name = record["name"].rsplit(".", 1)[-1]
        if not record["docstring"]:
            return "no_docstring"
        if self.skip_dunder and name.startswith("__") and name.endswith("__"):
            return "dunder"
        if self.skip_test_names and "test" in record["name"].lower():
            return "test_name"
        if 1 + record["body"].count("\n") + bool(record["body"]) < self.min_lines:
            return "too_short"
        if len(record["docstring"].split()) < self.min_docstring_words:
            return "short_docstring"
        return None


@dataclass(frozen=True)
class MineSettings:
    """Everything that decides what `codemt mine` produces."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_file_bytes: int = 1_000_000
    # Files and jsonl rows of more tokens are not parsed: memory and time grow with tokens.
    max_parse_tokens: int = reading.MAX_PARSE_TOKENS
    repair: bool = True
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "methods"  # or "repos"; see assign_splits
    shard_rows: int = 100_000
    jsonl: bool = False
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "codemt")
    progress: bool = True
    # Sources kept out of the corpus with every copy of their methods, exact or near (the
    # de-duplication's rules): evaluation data, whose code other projects may have copied.
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_file_bytes < 1:
            raise ValueError(f"max_file_bytes must be positive, got {self.max_file_bytes}")
        if self.max_parse_tokens < 1:
            raise ValueError(f"max_parse_tokens must be positive, got {self.max_parse_tokens}")
        if len(self.split_ratios) != 3 or any(r < 0 for r in self.split_ratios):
            raise ValueError(
                f"split ratios must be three non-negative numbers, got {self.split_ratios}"
            )
        if abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must add up to 1, got {self.split_ratios}")
        if self.split_by not in ("methods", "repos"):
            raise ValueError(f"split_by must be 'methods' or 'repos', got {self.split_by!r}")
        if self.shard_rows < 1:
            raise ValueError(f"shard_rows must be positive, got {self.shard_rows}")

    def fingerprint(self) -> str:
        """A digest of the settings that change staged records (workers, output format don't)."""
        relevant = {
            "version": __version__,
            "stage_format": STAGE_FORMAT,
            "max_file_bytes": self.max_file_bytes,
            "max_parse_tokens": self.max_parse_tokens,
            "repair": self.repair,
            "filters": asdict(self.filters),
            "dedup": asdict(self.dedup),
        }
        return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _hash_position(repo: str) -> float:
    return int.from_bytes(hashlib.sha256(repo.encode()).digest()[:8], "big") / 2**64


def _split_at(position: float, ratios: tuple[float, float, float]) -> str:
    if position < ratios[0]:
        return "train"
    if position < ratios[0] + ratios[1]:
        return "valid"
    return "test"


def split_of(repo: str, ratios: tuple[float, float, float]) -> str:
    """The split of a repository by a deterministic hash of its name alone (`split_by="repos"`)."""
    return _split_at(_hash_position(repo), ratios)


def assign_splits(
    methods_per_repo: dict[str, int], ratios: tuple[float, float, float], by: str
) -> dict[str, str]:
    """The split of every repository; a repository is always whole in one split.

    `by="repos"`: each repository by the hash of its name, so ratios hold for repository
    counts and a repository's split never depends on the others. `by="methods"`: the
    repositories, in the order of their name hashes, are laid end to end, each as long
    as its share of methods, and each goes to the split its midpoint falls in, so the
    ratios hold for method counts even when a few repositories are huge (a local corpus
    of installed packages is such a case). A repository larger than half of the smallest
    held-out share trains, largest first, as long as the others can still fill the
    held-out shares: a held-out split that one project fills measures that project alone
    (torch, a tenth of a corpus of installed packages, was once the whole valid split).
    """
    if by == "repos":
        return {repo: split_of(repo, ratios) for repo in methods_per_repo}
    total = sum(methods_per_repo.values())
    held_out = (ratios[1] + ratios[2]) * total
    limit = min(r for r in ratios[1:] if r > 0) / 2 * total if held_out > 0 else math.inf
    splits, rest = {}, total
    for repo in sorted(methods_per_repo, key=lambda r: (-methods_per_repo[r], r)):
        n = methods_per_repo[repo]
        if n <= limit:
            break
        if rest - n >= held_out:  # else the others could not fill the held-out shares
            splits[repo] = "train"
            rest -= n
    if rest <= 0:  # nothing left with methods in it
        return {repo: "train" for repo in methods_per_repo}
    # The held-out shares of the whole corpus, as shares of what is left to lay out.
    valid, test = (min(r * total / rest, 1.0) for r in ratios[1:])
    rest_ratios = (max(1.0 - valid - test, 0.0), valid, test)
    start = 0.0
    for repo in sorted(methods_per_repo, key=lambda r: (_hash_position(r), r)):
        if repo in splits:
            continue
        share = methods_per_repo[repo] / rest
        splits[repo] = _split_at(start + share / 2, rest_ratios)
        start += share
    return splits


# ---------------------------------------------------------------- stage 1: extraction


@dataclass(frozen=True)
class _Task:
    """A chunk of one source's work, sent to a worker."""

    source: int  # index into the run's list of sources
    tasks_in_source: int
    repo: str = ""
    root: str = ""
    files: tuple[str, ...] = ()
    jsonl_rows: tuple[str, ...] = ()
    jsonl_path: str = ""
    first_line: int = 1  # line number of jsonl_rows[0] in jsonl_path
    # Found while discovering the source; attached to its first task.
    counts: tuple[tuple[str, int], ...] = ()
    failures: tuple[SourceFailure, ...] = ()
    left_out: tuple[Skip, ...] = ()


@dataclass
class _Tally:
    """What mining part of a source counted, and the first skips it met, with where and why."""

    counts: Counter = field(default_factory=Counter)
    skipped: list[dict] = field(default_factory=list)  # {"reason": count key, "message": ...}

    def skip(self, key: str, message: str) -> None:
        """Count a unit left out under `key` (e.g. "files_skipped:syntax_error") and list it."""
        self.counts[key] += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"reason": key, "message": reading.printable(message)})

    def add(self, other: _Tally) -> None:
        self.counts.update(other.counts)
        self.skipped.extend(other.skipped[: MAX_LISTED_SKIPS - len(self.skipped)])


def _keyed(
    pairs: list[tuple[ast.AST, dict]], settings: MineSettings, counts: Counter
) -> list[dict]:
    """Add the de-duplication keys and the docstring-task flag to the records of one file."""
    records = [record for _, record in pairs]
    tokens = [
        code_tokens(r["signature"], r["body"], local_names(node, r["body"])) for node, r in pairs
    ]
    bands = (
        band_keys_batch(tokens, settings.dedup) if settings.dedup.near else [None] * len(records)
    )
    for record, keys in zip(records, bands, strict=True):
        record["exact_key"] = exact_key(record["signature"], record["body"])
        record["band_keys"] = keys
        reason = settings.filters.exclusion(record)
        record["docstring_task"] = reason is None
        if reason and reason != "no_docstring":
            counts[f"docstring_task_excluded:{reason}"] += 1
    return records


def _lone_surrogate_field(record: dict) -> str | None:
    """The first text field of a record that holds a lone surrogate (as a docstring written
    with a "\\ud800" escape does), which UTF-8 and so Parquet cannot store; None if none."""
    for name, value in record.items():
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and reading.holds_lone_surrogate(text) for text in texts):
            return name
    return None


def _storable(
    pairs: Iterable[tuple[ast.AST, dict]], path: Path, tally: _Tally
) -> list[tuple[ast.AST, dict]]:
    """The methods of a file that can be stored; the others are skipped and counted."""
    kept = []
    for node, record in pairs:
        field = _lone_surrogate_field(record)
        if field is None:
            kept.append((node, record))
        else:
            tally.skip(
                "methods_skipped:lone_surrogate",
                f"{path}:{record['lineno']}: {record['name']}: its {field} holds a lone "
                "surrogate, which UTF-8 cannot store",
            )
    return kept


def _mine_file(
    path: Path, root: Path, repo: str, settings: MineSettings, tally: _Tally
) -> list[dict]:
    # Names of files and folders that are not UTF-8 are stored backslash-escaped.
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    relative, repo = reading.printable(relative), reading.printable(repo)
    counts = tally.counts
    try:
        data = path.read_bytes()
        text = reading.decode_source(data, max_bytes=settings.max_file_bytes)
        tree, _, repair = reading.parse_with_repairs(
            text, repair=settings.repair, max_tokens=settings.max_parse_tokens
        )
        if repair:
            counts[f"files:{repair}"] += 1
        methods = _storable(extract_methods(tree, repo=repo, path=relative), path, tally)
        records = _keyed(methods, settings, counts)
    except reading.SkipFile as skip:
        tally.skip(f"files_skipped:{skip.reason}", f"{path}: {skip}")
        return []
    except OSError as error:
        tally.skip(f"files_skipped:{reading.UNREADABLE}", f"{path}: {error.strerror or error}")
        return []
    except RecursionError:
        tally.skip(f"files_skipped:{reading.TOO_DEEP}", f"{path}: nesting too deep")
        return []
    except MemoryError:
        tally.skip(f"files_skipped:{reading.OUT_OF_MEMORY}", f"{path}: ran out of memory")
        return []
    counts["files_parsed"] += 1
    counts["methods"] += len(records)
    return records


def _mine_jsonl_row(line: str, where: str, settings: MineSettings, tally: _Tally) -> list[dict]:
    """One CodeSearchNet/CodeXGLUE row: its `original_string` (or `code`) is one function.

    `where` is the row's file and line number ("train.jsonl:12"), for the skip messages.
    """
    counts = tally.counts
    try:
        row, code, lineno = _read_row(line)
        text = textwrap.dedent(code.replace("\r\n", "\n"))
        tree, _, repair = reading.parse_with_repairs(
            text, repair=settings.repair, max_tokens=settings.max_parse_tokens
        )
        if repair:
            counts[f"files:{repair}"] += 1
        repo, path = (reading.printable(str(row.get(key, ""))) for key in ("repo", "path"))
        found = next(extract_methods(tree, repo=repo, path=path), None)
    except (_BadRow, reading.SkipFile) as skip:
        tally.skip(f"rows_skipped:{skip.reason}", f"{where}: {skip}")
        return []
    except (RecursionError, MemoryError):
        tally.skip(f"rows_skipped:{reading.TOO_DEEP}", f"{where}: nesting too deep")
        return []
    if found is None:
        tally.skip("rows_skipped:no_function", f"{where}: its code holds no function")
        return []
    node, record = found
    func_name = reading.printable(str(row.get("func_name") or record["name"]))
    record["name"] = func_name
    if "." in func_name and not record["class_name"]:
        record["class_name"] = func_name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    record["lineno"] = lineno or record["lineno"]
    field = _lone_surrogate_field(record)
    if field is not None:
        message = f"{where}: its {field} holds a lone surrogate, which UTF-8 cannot store"
        tally.skip("methods_skipped:lone_surrogate", message)
        return []
    counts["rows_parsed"] += 1
    counts["methods"] += 1
    return _keyed([(node, record)], settings, counts)


class _BadRow(Exception):
    """A jsonl row that cannot be mined; `reason` is the counted key, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _read_row(line: str) -> tuple[dict, str, int | None]:
    """A jsonl row, its code and its `lineno` (None when it has none); raises _BadRow."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadRow("bad_row", f"not JSON ({error})") from None
    if not isinstance(row, dict):
        raise _BadRow("bad_row", "not a JSON object")
    code = row.get("original_string") or row.get("code")
    if not isinstance(code, str):
        raise _BadRow("bad_row", "no code string in original_string or code")
    lineno = row.get("lineno")
    return row, code, None if lineno is None else _line_number(lineno)


def _line_number(value: object) -> int:
    """A row's `lineno`, which must be a whole number from 1 to MAX_LINENO (9.0 is 9)."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= MAX_LINENO:
        return number
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise _BadRow(
        "bad_lineno",
        f"lineno {shown} is not a line number (a whole number from 1 to {MAX_LINENO}); "
        "fix it or leave it out",
    )


def _run_task(task_and_settings: tuple[_Task, MineSettings]) -> tuple[int, list[dict], _Tally]:
    """Worker entry point: mine one chunk of a source."""
    task, settings = task_and_settings
    tally = _Tally(Counter(dict(task.counts)))
    for part in task.left_out:
        tally.skip(f"parts_skipped:{part.reason}", part.message)
    records: list[dict] = []
    root = Path(task.root)
    for name in task.files:
        records.extend(_mine_file(Path(name), root, task.repo, settings, tally))
    for offset, line in enumerate(task.jsonl_rows):
        if line.strip():
            where = f"{task.jsonl_path}:{task.first_line + offset}"
            records.extend(_mine_jsonl_row(line, where, settings, tally))
    return task.source, records, tally


def _read_jsonl(path: Path) -> tuple[list[str], Skip | None]:
    """The lines of a jsonl(.gz) file and, if it is damaged part way (a cut download), the
    skip of the rest; raises OSError, EOFError or zlib.error when not one line can be read."""
    opener = gzip.open if path.name.endswith(".gz") else open
    lines: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                lines.append(line)
    except (OSError, EOFError, zlib.error) as error:
        if not lines:
            raise
        message = (
            f"{path}: damaged after line {len(lines)} ({error}); the rows before are mined, "
            "the rest is left out"
        )
        return lines, Skip("damaged_file", message)
    return lines, None


def _chunks(items: Sequence, size: int) -> list[tuple]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def _tasks_for_source(index: int, spec: str, settings: MineSettings) -> list[_Task]:
    """Resolve one source (cloning or extracting it if needed) into tasks."""
    parts: list[dict] = []
    failures: list[SourceFailure] = []
    left_out: list[Skip] = []
    counts: Counter = Counter()
    for unit in resolve(spec, settings.cache_dir, max_file_bytes=settings.max_file_bytes):
        if isinstance(unit, SourceFailure):
            failures.append(unit)
        elif isinstance(unit, Repository):
            counts["repos"] += 1
            counts["files_seen"] += len(unit.files)
            for reason, number in unit.skipped:
                counts[f"files_skipped:{reason}"] += number
            left_out.extend(unit.left_out)
            for chunk in _chunks([str(p) for p in unit.files], FILES_PER_TASK):
                parts.append({"repo": unit.name, "root": str(unit.root), "files": chunk})
        elif isinstance(unit, JsonlSource):
            try:
                lines, damage = _read_jsonl(unit.path)
            except (OSError, EOFError, zlib.error) as exc:
                failures.append(SourceFailure(spec, "unreadable", f"{unit.path}: {exc}"))
                continue
            if damage is not None:
                left_out.append(damage)
            counts["jsonl_rows"] += len(lines)
            for start in range(0, len(lines), JSONL_ROWS_PER_TASK):
                chunk = tuple(lines[start : start + JSONL_ROWS_PER_TASK])
                parts.append(
                    {"jsonl_rows": chunk, "jsonl_path": str(unit.path), "first_line": start + 1}
                )
    if not parts:
        parts.append({})
    parts[0] = {
        **parts[0],
        "counts": tuple(counts.items()),
        "failures": tuple(failures),
        "left_out": tuple(left_out),
    }
    return [_Task(source=index, tasks_in_source=len(parts), **part) for part in parts]


class _Stage:
    """Where staged records and done-markers of one output directory live."""

    def __init__(self, out: Path, settings: MineSettings):
        self.root = out / ".work"
        fingerprint = settings.fingerprint()
        marker = self.root / "fingerprint"
        if marker.is_file() and marker.read_text().strip() != fingerprint:
            print(
                f"{out}: mining settings changed since the last run; re-mining every source",
                file=sys.stderr,
            )
            shutil.rmtree(self.root)
        (self.root / "staged").mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint)

    def key(self, spec: str) -> str:
        # surrogatepass: a spec naming a path that is not UTF-8 holds surrogate escapes.
        return hashlib.sha1(spec.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def done_path(self, spec: str) -> Path:
        return self.root / "staged" / f"{self.key(spec)}.json"

    def records_path(self, spec: str) -> Path:
        return self.root / "staged" / f"{self.key(spec)}.parquet"

    def is_done(self, spec: str) -> bool:
        return self.done_path(spec).is_file() and self.records_path(spec).is_file()

    def save(
        self, spec: str, records: list[dict], tally: _Tally, failures: list[SourceFailure]
    ) -> None:
        """Write a source's records, then its done-marker (both atomically, marker last)."""
        records.sort(key=lambda r: (r["repo"], r["path"], r["lineno"], r["name"]))
        table = pa.Table.from_pylist(records, schema=STAGED_SCHEMA)
        tmp = self.records_path(spec).with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(self.records_path(spec))
        status = {
            "source": spec,
            "counts": dict(tally.counts),
            "failures": [asdict(f) for f in failures],
            "skipped": tally.skipped,
        }
        tmp = self.done_path(spec).with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1))
        tmp.replace(self.done_path(spec))

    def status(self, spec: str) -> dict:
        return json.loads(self.done_path(spec).read_text())


def _progress(settings: MineSettings, **kwargs):
    from tqdm import tqdm

    return tqdm(disable=not settings.progress, dynamic_ncols=True, **kwargs)


def _stage_sources(specs: list[str], stage: _Stage, settings: MineSettings) -> list[str]:
    """Extract every source not yet done; return the specs skipped as already done."""
    pending = [(i, s) for i, s in enumerate(specs) if not stage.is_done(s)]
    already = [s for s in specs if stage.is_done(s)]

    def tasks() -> Iterator[tuple[_Task, MineSettings]]:
        for index, spec in pending:
            for task in _tasks_for_source(index, spec, settings):
                yield task, settings

    records: dict[int, list[dict]] = {}
    tallies: dict[int, _Tally] = {}
    failures: dict[int, list[SourceFailure]] = {}
    remaining: dict[int, int] = {}
    bar = _progress(settings, desc="mining", unit="file")

    def collect(task: _Task, result: tuple[int, list[dict], _Tally]) -> None:
        index, found, tally = result
        remaining.setdefault(index, task.tasks_in_source)
        records.setdefault(index, []).extend(found)
        tallies.setdefault(index, _Tally()).add(tally)
        failures.setdefault(index, []).extend(task.failures)
        warnings = [f"{f.source}: {f.message}" for f in task.failures]
        warnings += [f"{specs[index]}: {part.message}" for part in task.left_out]
        for warning in warnings:
            print(f"warning: {reading.printable(warning)}", file=sys.stderr)
        bar.update(len(task.files) + len(task.jsonl_rows))
        remaining[index] -= 1
        if remaining[index] == 0:
            stage.save(specs[index], records.pop(index), tallies.pop(index), failures.pop(index))

    try:
        if settings.workers == 1:
            for item in tasks():
                collect(item[0], _run_task(item))
        else:
            with get_context("spawn").Pool(settings.workers) as pool:
                # imap keeps task order, so each result pairs with the task that produced it;
                # the pool's feeder thread resolves (clones, extracts) the next sources meanwhile.
                feed = tasks()
                sent: list[_Task] = []

                def recorded() -> Iterator[tuple[_Task, MineSettings]]:
                    for item in feed:
                        sent.append(item[0])
                        yield item

                for position, result in enumerate(pool.imap(_run_task, recorded(), chunksize=1)):
                    collect(sent[position], result)
                    sent[position] = None  # free the task's file list
    finally:
        bar.close()
    return already


# ---------------------------------------------------------------- stage 2: finishing


def _deduplicate(
    paths: list[Path], settings: MineSettings, excluded: Sequence[Path] = ()
) -> tuple[list[np.ndarray], Counter, Counter]:
    """Decide which staged rows survive global de-duplication.

    Rows that copy a row of the `excluded` files are removed first ("excluded"): exact or
    near duplicates, and methods with the very same body (a copy whose signature gained
    type annotations, say) unless the body is too short to tell.
    Returns a keep-mask per file, the count of removed rows per kind, and the count of
    kept methods per repository.
    """
    columns = ["repo", "path", "lineno", "docstring", "exact_key", "band_keys"]
    blocked = Deduplicator(settings.dedup)
    blocked_bodies: set[int] = set()
    for path in excluded:
        table = pq.read_table(path, columns=["exact_key", "band_keys"])
        exact_keys, band_lists = table.column("exact_key"), table.column("band_keys")
        for key, row_bands in zip(exact_keys.to_numpy(), band_lists.to_pylist(), strict=True):
            blocked.remember(int(key), row_bands)
        blocked_bodies.update(int(k) for k in _body_keys(path) if k)
    tables = [pq.read_table(p, columns=columns) for p in paths]
    bodies = [_body_keys(p) if excluded else None for p in paths]
    order_keys = []
    for file_index, table in enumerate(tables):
        has_doc = [bool(d) for d in table.column("docstring").to_pylist()]
        repos = table.column("repo").to_pylist()
        files = table.column("path").to_pylist()
        lines = table.column("lineno").to_pylist()
        for row in range(table.num_rows):
            # Documented methods first: of two copies, keep the one that teaches docstrings.
            order_keys.append(
                (not has_doc[row], repos[row], files[row], lines[row], file_index, row)
            )
    order_keys.sort()
    dedup = Deduplicator(settings.dedup)
    masks = [np.ones(t.num_rows, dtype=bool) for t in tables]
    exact = [t.column("exact_key").to_numpy() for t in tables]
    bands = [t.column("band_keys").to_pylist() for t in tables]
    removed: Counter = Counter()
    kept: Counter = Counter()
    for _, repo, *_, file_index, row in order_keys:
        key, row_bands = int(exact[file_index][row]), bands[file_index][row]
        verdict = None
        if excluded and (
            blocked.match(key, row_bands) or int(bodies[file_index][row]) in blocked_bodies
        ):
            verdict = "excluded"
        verdict = verdict or dedup.offer(key, row_bands)
        if verdict:
            masks[file_index][row] = False
            removed[verdict] += 1
        else:
            kept[repo] += 1
    return masks, removed, kept


def _check_excluded(specs: list[str], stage: _Stage) -> None:
    """Refuse an excluded source that could not be read whole or holds no method: nothing
    would be kept out, silently. Its staged result is dropped, so a rerun reads it again."""
    for spec in specs:
        status = stage.status(spec)
        if status["failures"]:
            problem = "; ".join(f["message"] for f in status["failures"])
        elif not status["counts"].get("methods"):
            problem = "no Python function found in it"
        else:
            continue
        stage.done_path(spec).unlink()
        raise ValueError(
            f"--exclude {spec}: {problem}; give a source whose methods are to be kept out "
            f"(a CodeSearchNet jsonl file, a directory, ...)"
        )


def _excluded_source(spec: str, stage: _Stage) -> dict:
    """How the manifest records an excluded source: as given, its methods, and for a file
    its SHA-256, by which `codemt recipe` recognises its benchmark wherever it lies."""
    path = Path(spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {
        "source": spec,
        "methods": stage.status(spec)["counts"].get("methods", 0),
        "sha256": digest,
    }


def _body_keys(path: Path) -> np.ndarray:
    """A hash of each staged method's body (uint64); 0 for a body of fewer than 10 words,
    which many unrelated methods may share."""
    keys = [np.zeros(0, dtype=np.uint64)]
    for batch in pq.ParquetFile(path).iter_batches(columns=["body"], batch_size=65536):
        bodies = batch.column(0).to_pylist()
        hashed = (exact_key("", b) if b and len(b.split()) >= 10 else 0 for b in bodies)
        keys.append(np.fromiter(hashed, dtype=np.uint64, count=len(bodies)))
    return np.concatenate(keys)


def _write_shards(
    paths: list[Path],
    masks: list[np.ndarray],
    splits: dict[str, str],
    out: Path,
    settings: MineSettings,
) -> Counter:
    """Write the surviving rows, split by repository, as Parquet shards; swap them in atomically."""
    tmp_dir = out / ".work" / "shards.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}
    rows_in_shard: Counter = Counter()
    shard_index: Counter = Counter()
    stats: Counter = Counter()
    repos_per_split: dict[str, set[str]] = {s: set() for s in SPLITS}

    def writer_for(split: str) -> pq.ParquetWriter:
        if split in writers and rows_in_shard[split] >= settings.shard_rows:
            writers.pop(split).close()
            shard_index[split] += 1
            rows_in_shard[split] = 0
        if split not in writers:
            name = tmp_dir / f"{split}-{shard_index[split]:05d}.parquet"
            writers[split] = pq.ParquetWriter(name, SCHEMA, compression="zstd")
        return writers[split]

    try:
        for path, mask in zip(paths, masks, strict=True):
            table = pq.read_table(path).filter(pa.array(mask)).select(SCHEMA.names)
            repos = table.column("repo").to_pylist()
            column = pa.array([splits[r] for r in repos], pa.string())
            table = table.set_column(table.schema.get_field_index("split"), "split", column)
            for split in SPLITS:
                part = table.filter(pc.equal(table.column("split"), split))
                if part.num_rows == 0:
                    continue
                repos_per_split[split].update(part.column("repo").to_pylist())
                offset = 0
                while offset < part.num_rows:
                    writer = writer_for(split)  # opens the next shard when this one is full
                    piece = part.slice(offset, settings.shard_rows - rows_in_shard[split])
                    writer.write_table(piece)
                    rows_in_shard[split] += piece.num_rows
                    offset += piece.num_rows
                stats[f"{split}:methods"] += part.num_rows
                stats[f"{split}:with_docstring"] += sum(
                    1 for d in part.column("docstring").to_pylist() if d
                )
                stats[f"{split}:docstring_task"] += sum(part.column("docstring_task").to_pylist())
    finally:
        for writer in writers.values():
            writer.close()
    for split in SPLITS:
        stats[f"{split}:repos"] = len(repos_per_split[split])
    final = shard_dir(out)
    old = out / ".work" / "shards.old"
    if final.exists():
        final.replace(old)
    tmp_dir.replace(final)
    if old.exists():
        shutil.rmtree(old)
    return stats


def mine(sources: Sequence[str], out: Path, settings: MineSettings | None = None) -> dict:
    """Mine `sources` into a corpus at `out`; returns the manifest (also written to disk)."""
    settings = settings or MineSettings()
    out = Path(out)
    t0 = time.perf_counter()
    specs = expand_sources(list(sources))
    if not specs:
        raise ValueError(
            "no sources given; pass directories, git URLs, archives, list files or python:stdlib"
        )
    excluded = expand_sources(list(settings.exclude)) if settings.exclude else []
    stage = _Stage(out, settings)
    already = _stage_sources([*specs, *excluded], stage, settings)
    _check_excluded(excluded, stage)

    paths = [stage.records_path(s) for s in specs]
    statuses = [stage.status(s) for s in specs]
    counts: Counter = Counter()
    for status in statuses:
        counts.update(status["counts"])
    masks, removed, kept = _deduplicate(paths, settings, [stage.records_path(s) for s in excluded])
    splits = assign_splits(kept, settings.split_ratios, settings.split_by)
    split_stats = _write_shards(paths, masks, splits, out, settings)
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
        from codemt.mine.csn import write_codesearchnet

        manifest["jsonl"] = write_codesearchnet(out)
    manifest["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
    manifest = _printable_values(manifest)
    tmp = manifest_path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path(out))
    return manifest


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
