"""The Ray engine of `codemt mine --engine ray`: sources mined by the workers of a Ray cluster.

Ray, because it is what the open pipelines for large text and code corpora run on now
(NeMo Curator, datatrove's Ray executor, Ray Data): the same Python runs on a laptop and
on a cluster of hundreds of nodes, joined with one address, and a task whose worker or
node died is run again.

What runs where:

- Each source is one task. A worker resolves it (clones, extracts), mines it and stages
  its records in `OUT/.work/staged/` exactly as the local engine does (atomically, the
  done-marker last), so a task that runs again after its worker died, or a rerun of a
  stopped `codemt mine`, never stages a method twice nor loses one.
- The finish: global de-duplication reads the staged keys from the shared folder where
  `codemt mine` runs (arrays of a few bytes a method: about 1.3 GB at 4M methods, 7 GB
  at PyMT5's 26M), finds the groups of methods linked by shared keys, and hands the
  greedy passes over those groups to the workers, a few parts a CPU
  (`codemt.mine.selection.deduplicate`). The split (a hash of each repository's name,
  or of the repositories laid end to end) is decided there too, and each shard is then
  a task: a worker reads its rows from the staged files and writes it under the shared
  folder (`codemt.mine.shards`).

So `--out` must be a folder every node and the driver see (a network file system, a
mounted bucket), codemt must be installed on every node, and local sources (folders,
archives, jsonl files) must lie on shared paths too; git URLs are cloned by the workers,
into `--cache-dir` (which may be a local folder).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from codemt.mine.selection import Runner
from codemt.mine.settings import MineSettings
from codemt.mine.staging import MiningStopped, Stage, WorkerLost, progress_bar, stage_source
from codemt.source import reading

# How many times a source's task runs again when its worker or node dies.
MAX_RETRIES = 3
# Sources handed to the cluster at once, per CPU of it: enough to keep every worker busy,
# few enough that waiting on them stays cheap with hundreds of thousands of sources.
TASKS_PER_CPU = 2
MIN_IN_FLIGHT = 8  # also while a cluster that scales with demand has no worker yet
RESOURCES_EVERY_S = 10.0  # how often the cluster's size is asked again
# The object store of a local instance: staging tasks return a few warnings, not records;
# the de-duplication's parts hold a few dozen bytes per method that shares a key (Ray
# spills to disk what does not fit).
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2


def import_ray():
    """The `ray` module, or a clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--engine ray needs Ray, which is not installed: pip install 'codemt[ray]' "
            "(on every node of the cluster), or mine with the local engine"
        ) from None
    return ray


@contextmanager
def ray_session(settings: MineSettings) -> Iterator[Any]:
    """The `ray` module, joined to the cluster (`--ray-address`) or to a local instance it
    starts, for the time of a block; a caller's own connection is used and kept."""
    ray = import_ray()
    # `ray.init` takes over SIGTERM (and leaves it taken after `ray.shutdown`): a caller's
    # handlers, a training loop's say, are given back when the Ray instance of this call ends.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = _connect(ray, settings)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)


def stage_on_ray(ray, specs: list[str], stage: Stage, settings: MineSettings) -> None:
    """Stage the sources not staged yet on the cluster's workers, a task a source."""
    pending = stage.pending(specs)
    if pending:
        _run_tasks(ray, pending, stage, settings)


def greedy_parts(ray) -> int:
    """How many parts the finish's greedy de-duplication is cut into: a few per CPU of the
    cluster as it is when asked (after staging: a cluster that scales with demand has
    grown by then)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) * TASKS_PER_CPU)


def runner(ray, doing: str) -> Runner:
    """A `codemt.mine.selection.Runner` on the cluster: a task a part, run again (up to
    `MAX_RETRIES` times) when its worker dies; the results in the order of the parts.
    `doing` names the work in the error that stops the run."""

    def run(fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
        refs = [remote.remote(part) for part in parts]
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            # The caller cleans up after the error, so the other tasks end first. They are
            # waited for, not cancelled: Ray's driver (2.60) can abort when a task it cancels
            # sends its reply at that moment, and these tasks are short.
            ray.wait(refs, num_returns=len(refs))
            raise MiningStopped(
                f"{doing} on the Ray cluster failed: {_cause(ray, exc)}; "
                "every source is staged: rerun the same command to finish"
            ) from None

    return run


def _cause(ray, exc: Exception) -> str:
    """A Ray error as a line: a task's own error (a full disk, say) rather than Ray's
    wrapping of it with the worker's traceback."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"


def _connect(ray, settings: MineSettings) -> bool:
    """Join the cluster (or start a local instance); True when this call started Ray."""
    if ray.is_initialized():  # a caller's own connection, kept as it is
        return False
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(
                address="local",
                num_cpus=settings.workers,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **options,
            )
    except ConnectionError as exc:
        raise ValueError(
            f"--ray-address {address}: cannot join the Ray cluster ({exc}); start one with "
            f"`ray start --head` or give the address of a running one"
        ) from None
    return True


def _run_tasks(ray, pending: list[tuple[int, str]], stage: Stage, settings: MineSettings) -> None:
    run = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(stage_source)
    # The workers read paths where they run: the cache folder and local sources as
    # absolute paths (the stage's root is one already); a source keeps its spec as its name.
    settings = replace(settings, cache_dir=Path(settings.cache_dir).absolute())
    waiting: dict = {}
    queue = list(reversed(pending))
    bar = progress_bar(settings, desc="mining", unit="source", total=len(pending))
    in_flight, asked = MIN_IN_FLIGHT, -math.inf
    try:
        while queue or waiting:
            # Asked again as it goes: an autoscaling cluster grows with the work it is given.
            if time.monotonic() - asked > RESOURCES_EVERY_S:
                cpus = int(ray.cluster_resources().get("CPU", 0))
                in_flight, asked = max(MIN_IN_FLIGHT, cpus * TASKS_PER_CPU), time.monotonic()
            while queue and len(waiting) < in_flight:
                index, spec = queue.pop()
                waiting[run.remote(index, spec, stage, settings, where=_absolute(spec))] = spec
            (ref,), _ = ray.wait(list(waiting), num_returns=1)
            spec = waiting.pop(ref)
            for warning in _result(ray, ref, spec, stage):
                print(warning, file=sys.stderr)
            bar.update(1)
    except MiningStopped:
        # The sources in flight are staged before the error is told (a rerun skips them);
        # waited for, not cancelled, as in `runner`.
        if waiting:
            ray.wait(list(waiting), num_returns=len(waiting))
        raise
    except BaseException:  # interrupted: what runs is stopped
        for ref in waiting:
            ray.cancel(ref)
        raise
    finally:
        bar.close()


def _result(ray, ref, spec: str, stage: Stage) -> list[str]:
    """A source task's warnings; its failure as the error `codemt mine` reports."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the task's own error: a full disk, say
        raise MiningStopped(
            f"mining {reading.printable(spec)} failed on a Ray worker: "
            f"{_cause(ray, exc)}; {stage.resume_note()}"
        ) from None
    except (
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError,
        ray.exceptions.OutOfMemoryError,
    ) as exc:  # its worker or node died, more often than tasks are run again
        raise WorkerLost(
            f"the Ray workers mining {reading.printable(spec)} died ({type(exc).__name__}); "
            f"{stage.resume_note()}"
        ) from None
    except ray.exceptions.RayError as exc:  # the cluster's own trouble
        raise MiningStopped(
            f"Ray could not mine {reading.printable(spec)}: {type(exc).__name__}: {exc}; "
            f"{stage.resume_note()}"
        ) from None


def _absolute(spec: str) -> str | None:
    """A relative local path made absolute, for a worker that runs elsewhere; None for
    anything else (a URL, python:stdlib, an absolute path)."""
    if "://" in spec or spec.startswith("python:") or Path(spec).is_absolute():
        return None
    local = Path(spec).expanduser()
    try:
        return str(local.absolute()) if local.exists() else None
    except OSError:  # a name that cannot be a path
        return None
