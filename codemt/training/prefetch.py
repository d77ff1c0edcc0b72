"""Getting the training batches: built ahead in worker processes on a GPU, and timed.

On a GPU the loop reads an epoch's batches through `built_ahead`, so that the device never
waits for Python between steps; on a CPU it builds them itself. Either way `TimedBatches`
adds up the time spent getting them, which the log reports as `input_share`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from codemt.training.config import TrainData

# On a GPU, batches are built ahead in this many worker processes, so the device never waits
# for Python between steps (on a CPU building one costs little beside a step). Processes,
# not a thread: building a large batch holds the interpreter long enough that a thread doing
# so starves the loop that launches the GPU's work. Not in pinned memory: token-budget
# batches change shape every step, so each would pin a new buffer, which slows the loop
# down (benchmarks/gpu_loop_overhead.py measures both).
GPU_WORKERS = 4
BATCHES_AHEAD = 4  # per worker
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class _EpochBatches(torch.utils.data.Dataset):
    """Batch `start + i` of one rank's epoch as item `i`: what a loader worker builds."""

    def __init__(self, data: TrainData, epoch: int, rank: int, world_size: int, start: int):
        self.data, self.epoch, self.rank, self.world_size = data, epoch, rank, world_size
        self.start = start
        self.count = data.num_batches(epoch, rank=rank, world_size=world_size) - start

    def __len__(self) -> int:
        return max(self.count, 0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # Starting an epoch's batches at any position costs nothing (the protocol's promise).
        batches = self.data.batches(
            self.epoch, rank=self.rank, world_size=self.world_size, start=self.start + index
        )
        return next(iter(batches))


def _ignore_stop_signals(worker_id: int) -> None:
    """In a loader worker: Ctrl-C and `kill` reach the whole process group, and a worker
    that died of them would leave the loop waiting for its batch instead of saving; the
    loop stops its workers itself. (Forked with these signals blocked: none is missed.)"""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def built_ahead(
    data: TrainData,
    epoch: int,
    rank: int,
    world_size: int,
    start: int,
    workers: int | None = None,
    ahead: int = BATCHES_AHEAD,
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of `data.batches(epoch, ...)` from `start` on, in the same order, built
    `ahead` per worker in `workers` forked processes (which inherit the epoch's plan, made
    here first). Closing the generator stops the workers."""
    epoch_batches = _EpochBatches(data, epoch, rank, world_size, start)
    loader = torch.utils.data.DataLoader(
        epoch_batches,
        batch_size=None,
        num_workers=GPU_WORKERS if workers is None else workers,
        prefetch_factor=ahead,
        multiprocessing_context="fork",
        worker_init_fn=_ignore_stop_signals,
        generator=torch.Generator(),  # its seeds drawn from the run's random state would shift it
    )
    # The parent may have tokenised in parallel (a token cache just built); forked workers
    # only slice arrays, so turn off the tokenizers library's warning about it, once per fork.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        iterator = iter(loader)  # forks the workers
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        yield from iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        for worker in getattr(iterator, "_workers", ()):
            if worker.is_alive():  # stuck, and deaf to the SIGTERM of shutdown's last resort
                worker.kill()
                worker.join()


class TimedBatches:
    """Batches, with the time spent getting them added up in `seconds`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def over(self, batches: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - start
            yield batch
