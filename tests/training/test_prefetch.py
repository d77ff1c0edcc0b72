"""Batches built ahead in worker processes: the same order, errors passed on, and no
worker left behind when the loop stops early or a signal reaches the process group."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from codemt.training.prefetch import built_ahead


class _Numbered:
    """Batches numbered by epoch and position; one of them can fail."""

    def __init__(self, count: int, fail_at: int | None = None, stall_at: int | None = None):
        self.count, self.fail_at, self.stall_at = count, fail_at, stall_at

    def num_batches(self, epoch, *, rank=0, world_size=1):
        return self.count // world_size

    def batches(self, epoch, *, rank=0, world_size=1, start=0):
        for position in range(rank + start * world_size, self.count, world_size):
            if position == self.fail_at:
                raise ValueError(f"bad shard at batch {position}")
            if position == self.stall_at:
                time.sleep(600)
            yield {"input_ids": torch.full((2, 3), 100 * epoch + position)}


def _numbers(batches) -> list[int]:
    return [int(b["input_ids"][0, 0]) for b in batches]


@pytest.mark.slow
def test_batches_built_ahead_in_workers_keep_their_order_errors_and_stop_early():
    import multiprocessing

    data = _Numbered(20)
    assert _numbers(built_ahead(data, 1, 0, 1, 0, workers=2, ahead=2)) == list(range(100, 120))
    # resuming mid-epoch, and one rank of two
    assert _numbers(built_ahead(data, 0, 0, 1, 15, workers=2)) == list(range(15, 20))
    assert _numbers(built_ahead(data, 0, 1, 2, 3, workers=2)) == list(range(7, 20, 2))
    assert _numbers(built_ahead(data, 0, 0, 1, 20, workers=2)) == []

    with pytest.raises(ValueError, match="bad shard at batch 5"):
        list(built_ahead(_Numbered(20, fail_at=5), 0, 0, 1, 0, workers=2))

    stream = built_ahead(data, 0, 0, 1, 0, workers=2)
    next(stream)
    for worker in multiprocessing.active_children():  # Ctrl-C reaches the whole group
        os.kill(worker.pid, signal.SIGINT)
        os.kill(worker.pid, signal.SIGTERM)
    assert _numbers(stream) == list(range(1, 20))  # the loop decides when to stop, not them

    stream = built_ahead(data, 0, 0, 1, 0, workers=2)
    next(stream)
    stream.close()  # the loop stops mid-epoch: no worker may be left behind
    assert not multiprocessing.active_children()

    stream = built_ahead(_Numbered(20, stall_at=2), 0, 0, 1, 0, workers=2)
    next(stream)
    stream.close()  # not even one stuck building a batch
    assert not multiprocessing.active_children()
