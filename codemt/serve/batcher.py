"""The server's dynamic batcher: concurrent requests generated together.

Requests that arrive together and ask for the same target, style and settings (`BatchKey`)
are run as one `Translator.translate_batch` call in a worker thread, so the event loop keeps
accepting requests while the model runs, and a batch costs little more than one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from codemt.generation import GenerationSettings, Translation


class TranslateBatch(Protocol):
    """What the batcher runs: `Translator.translate_batch`, or a stand-in in tests."""

    def __call__(
        self,
        methods: Sequence[dict[str, Any]],
        target: str,
        style: str | None,
        *,
        settings: GenerationSettings,
    ) -> list[Translation]: ...


class Overloaded(Exception):
    """The queue is full: the client should retry later."""


@dataclass(frozen=True)
class BatchKey:
    """What requests must share to be generated together."""

    target: str
    style: str | None
    settings: GenerationSettings


@dataclass(frozen=True)
class BatchResult:
    """A request's translation and how it was made (durations in seconds)."""

    translation: Translation
    queued: float
    generate: float
    batch_size: int


@dataclass
class _Job:
    record: dict[str, Any]
    future: asyncio.Future
    submitted: float = field(default_factory=time.monotonic)  # a timestamp


class Batcher:
    """Groups concurrent translation requests into batched `translate_batch` calls.

    `translate` queues a request and waits for its result; `run` (one task for the app's
    lifetime) takes the group whose first request is oldest once it is full or has waited
    `wait_s`, and runs it in a worker thread. One batch runs at a time: the model uses every
    core already, and requests that arrive meanwhile form the next batch, so the busier the
    server, the larger its batches. A request cancelled before its batch starts (timed out)
    is dropped; one whose batch fails alone gets the error, its batchmates are retried one by one.
    """

    def __init__(
        self,
        translate_batch: TranslateBatch,
        *,
        max_batch: int = 16,
        wait_s: float = 0.01,
        max_queue: int = 64,
    ) -> None:
        self._translate_batch = translate_batch
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self._groups: dict[BatchKey, list[_Job]] = {}
        self._arrived = asyncio.Event()

    @property
    def queued(self) -> int:
        """Requests waiting for their batch to start."""
        return sum(not job.future.done() for jobs in self._groups.values() for job in jobs)

    async def translate(self, record: dict[str, Any], key: BatchKey) -> BatchResult:
        """Queue one method and wait for its translation; Overloaded if the queue is full."""
        if self.queued >= self.max_queue:
            raise Overloaded(f"the server is busy ({self.queued} requests queued); retry later")
        job = _Job(record, asyncio.get_running_loop().create_future())
        self._groups.setdefault(key, []).append(job)
        self._arrived.set()
        return await job.future

    async def run(self) -> None:
        """Run batches for ever (until cancelled)."""
        while True:
            key, jobs = await self._next_batch()
            await self._run_batch(key, jobs)

    async def _next_batch(self) -> tuple[BatchKey, list[_Job]]:
        while True:
            wait = None
            for key in list(self._groups):  # drop requests that gave up
                live = [job for job in self._groups[key] if not job.future.done()]
                if live:
                    self._groups[key] = live
                else:
                    del self._groups[key]
            if self._groups:
                key = min(self._groups, key=lambda k: self._groups[k][0].submitted)
                jobs = self._groups[key]
                wait = jobs[0].submitted + self.wait_s - time.monotonic()
                if len(jobs) >= self.max_batch or wait <= 0:
                    batch, rest = jobs[: self.max_batch], jobs[self.max_batch :]
                    if rest:
                        self._groups[key] = rest
                    else:
                        del self._groups[key]
                    return key, batch
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)

    async def _run_batch(self, key: BatchKey, jobs: list[_Job]) -> None:
        t0 = time.monotonic()
        try:
            translations = await asyncio.to_thread(
                self._translate_batch,
                [job.record for job in jobs],
                key.target,
                key.style,
                settings=key.settings,
            )
        except Exception as error:
            if len(jobs) > 1:  # find the request that failed; the others still get answers
                for job in jobs:
                    await self._run_batch(key, [job])
            elif not jobs[0].future.done():
                jobs[0].future.set_exception(error)
            return
        elapsed = time.monotonic() - t0
        for job, translation in zip(jobs, translations, strict=True):
            if not job.future.done():
                job.future.set_result(
                    BatchResult(translation, t0 - job.submitted, elapsed, len(jobs))
                )
