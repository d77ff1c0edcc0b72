"""Phase one of `codemt mine`: every source's method records, staged on all cores.

Each source is resolved into repositories (cloned or extracted if needed) and cut into tasks
of a few files or jsonl rows, which worker processes turn into records. A source's records,
with their de-duplication keys, are written to `DIR/.work/staged/`, then its done-marker;
a rerun with the same output folder skips the sources already done, and redoes them all
when the settings that change records differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from codemt.corpus import SCHEMA
from codemt.mine.jsonl import read_jsonl
from codemt.mine.records import Tally, mine_file, mine_jsonl_row
from codemt.mine.resolved import JsonlSource, Repository, Skip, SourceFailure
from codemt.mine.settings import MineSettings
from codemt.mine.sources import resolve
from codemt.source import reading

STAGED_SCHEMA = SCHEMA.append(pa.field("exact_key", pa.int64())).append(
    pa.field("band_keys", pa.list_(pa.int64()))
)
FILES_PER_TASK = 16
# Staged files are written in row groups of this many methods, so that a shard's task
# reads the parts of a large source's file that hold its rows, not the whole file.
STAGED_ROW_GROUP_ROWS = 65_536
TASKS_AHEAD_PER_WORKER = 4
JSONL_ROWS_PER_TASK = 512


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The local engine's worker processes (started afresh: no state of the caller's),
    which mine and nothing else for their whole life, collecting garbage rarely."""
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=reading.collect_rarely
    )


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


def _run_task(task_and_settings: tuple[_Task, MineSettings]) -> tuple[int, list[dict], Tally]:
    """Worker entry point: mine one chunk of a source."""
    task, settings = task_and_settings
    tally = Tally(Counter(dict(task.counts)))
    for part in task.left_out:
        tally.skip(f"parts_skipped:{part.reason}", part.message)
    records: list[dict] = []
    root = Path(task.root)
    for name in task.files:
        records.extend(mine_file(Path(name), root, task.repo, settings, tally))
    for offset, line in enumerate(task.jsonl_rows):
        if line.strip():
            where = f"{task.jsonl_path}:{task.first_line + offset}"
            records.extend(mine_jsonl_row(line, where, settings, tally))
    return task.source, records, tally


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
                lines, damage = read_jsonl(unit.path)
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


class Stage:
    """Where staged records and done-markers of one output directory live."""

    def __init__(self, out: Path, settings: MineSettings):
        # Absolute: a cluster's workers run elsewhere than where the path was given.
        self.root = Path(out).absolute() / ".work"
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
        self, spec: str, records: list[dict], tally: Tally, failures: list[SourceFailure]
    ) -> None:
        """Write a source's records, then its done-marker (both atomically, marker last)."""
        records.sort(key=lambda r: (r["repo"], r["path"], r["lineno"], r["name"]))
        table = pa.Table.from_pylist(records, schema=STAGED_SCHEMA)
        status = {
            "source": spec,
            "counts": dict(tally.counts),
            "failures": [asdict(f) for f in failures],
            "skipped": tally.skipped,
        }
        # Names of this writer's own: a task run again while the first run of it still
        # writes (a node thought dead) must not write into the other's file.
        own = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        records_tmp = self.records_path(spec).with_suffix(own)
        done_tmp = self.done_path(spec).with_suffix(own)
        try:
            pq.write_table(
                table, records_tmp, compression="zstd", row_group_size=STAGED_ROW_GROUP_ROWS
            )
            records_tmp.replace(self.records_path(spec))
            done_tmp.write_text(json.dumps(status, indent=1))
            done_tmp.replace(self.done_path(spec))
        except BaseException:  # a full disk, say: no partial file left behind
            records_tmp.unlink(missing_ok=True)
            done_tmp.unlink(missing_ok=True)
            raise

    def status(self, spec: str) -> dict:
        return json.loads(self.done_path(spec).read_text())

    def resume_note(self) -> str:
        """What a stopped run tells of what it keeps."""
        return (
            f"the sources mined until then are kept in {self.root}: "
            "rerun the same command to resume"
        )

    def pending(self, specs: Sequence[str]) -> list[tuple[int, str]]:
        """The (index, spec) of the sources not staged yet, each spec once."""
        first = {spec: i for i, spec in reversed(list(enumerate(specs)))}
        return [
            (i, spec) for i, spec in enumerate(specs) if first[spec] == i and not self.is_done(spec)
        ]


def progress_bar(settings: MineSettings, **kwargs):
    from tqdm import tqdm

    return tqdm(disable=not settings.progress, dynamic_ncols=True, **kwargs)


class MiningStopped(RuntimeError):
    """The run stopped before its end; the sources staged until then are kept for the rerun
    that resumes it."""


class WorkerLost(MiningStopped):
    """A worker process died (killed, out of memory) while mining."""


def stage_sources(specs: list[str], stage: Stage, settings: MineSettings) -> None:
    """Extract every source not staged yet with this machine's worker processes (the local
    engine), each source cut into tasks of a few files."""
    pending = stage.pending(specs)

    def tasks() -> Iterator[tuple[_Task, MineSettings]]:
        for index, spec in pending:
            for task in _tasks_for_source(index, spec, settings):
                yield task, settings

    records: dict[int, list[dict]] = {}
    tallies: dict[int, Tally] = {}
    failures: dict[int, list[SourceFailure]] = {}
    remaining: dict[int, int] = {}
    bar = progress_bar(settings, desc="mining", unit="file")

    def collect(task: _Task, result: tuple[int, list[dict], Tally]) -> None:
        index, found, tally = result
        remaining.setdefault(index, task.tasks_in_source)
        records.setdefault(index, []).extend(found)
        tallies.setdefault(index, Tally()).add(tally)
        failures.setdefault(index, []).extend(task.failures)
        for warning in _warnings(specs[index], task):
            print(warning, file=sys.stderr)
        bar.update(len(task.files) + len(task.jsonl_rows))
        remaining[index] -= 1
        if remaining[index] == 0:
            stage.save(specs[index], records.pop(index), tallies.pop(index), failures.pop(index))

    try:
        if settings.workers == 1:
            for item in tasks():
                collect(item[0], _run_task(item))
        else:
            for task, result in _in_worker_processes(tasks(), settings.workers):
                collect(task, result)
    except BrokenProcessPool:
        unfinished = [reading.printable(s) for _, s in pending if not stage.is_done(s)]
        more = " and others" if len(unfinished) > 3 else ""
        raise WorkerLost(
            "a worker process died (killed, or out of memory?) while mining "
            f"{', '.join(unfinished[:3])}{more}; {stage.resume_note()}"
        ) from None
    finally:
        bar.close()


def stage_source(
    index: int, spec: str, stage: Stage, settings: MineSettings, *, where: str | None = None
) -> list[str]:
    """Mine one source whole in this process and stage it under its `spec`: what a
    cluster's worker runs. `where` is the spec to read, when not `spec` itself (a relative
    path made absolute). Returns the warnings to print (sources that failed, parts left
    out)."""
    records: list[dict] = []
    tally = Tally()
    failures: list[SourceFailure] = []
    warnings: list[str] = []
    with reading.rare_collections():  # a cluster's worker may run other tasks after
        for task in _tasks_for_source(index, where or spec, settings):
            _, found, task_tally = _run_task((task, settings))
            records.extend(found)
            tally.add(task_tally)
            failures.extend(task.failures)
            warnings.extend(_warnings(spec, task))
        stage.save(spec, records, tally, failures)
    return warnings


def _warnings(spec: str, task: _Task) -> list[str]:
    lines = [f"{f.source}: {f.message}" for f in task.failures]
    lines += [f"{spec}: {part.message}" for part in task.left_out]
    return [f"warning: {reading.printable(line)}" for line in lines]


def _in_worker_processes(
    tasks: Iterator[tuple[_Task, MineSettings]], workers: int
) -> Iterator[tuple[_Task, tuple[int, list[dict], Tally]]]:
    """Each task with its result, in task order, run by `workers` processes.

    A thread hands the tasks to the pool as they come, so the next sources are resolved
    (cloned, extracted) while the workers mine; a worker that dies breaks the pool, which
    raises `BrokenProcessPool` here instead of waiting forever for its task.
    """
    sent: queue.Queue = queue.Queue()
    stop = threading.Event()
    # Tasks handed out and not yet read back: enough to keep every worker busy, few enough
    # that the sources are resolved (cloned) as they are needed, not all at once.
    room = threading.Semaphore(TASKS_AHEAD_PER_WORKER * workers)

    def feed(pool: ProcessPoolExecutor) -> None:
        try:
            for item in tasks:
                while not room.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                sent.put((item[0], pool.submit(_run_task, item)))
        except BaseException as exc:  # handed to the reading side, which raises it
            sent.put(exc)
        sent.put(None)

    pool = worker_pool(workers)
    feeder = threading.Thread(target=feed, args=(pool,), daemon=True)
    feeder.start()
    try:
        while (item := sent.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            task, future = item
            result = future.result()
            room.release()
            yield task, result
    finally:
        stop.set()  # the feeder ends at its next task (not joined: it may be cloning)
        pool.shutdown(cancel_futures=True)


def check_excluded(specs: list[str], stage: Stage) -> None:
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
