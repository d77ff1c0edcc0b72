"""Stopping a run together: stop signals, and what its processes agree on at every step.

SIGTERM and SIGINT are caught while training (`stop_requests`), so that the loop finishes
the step under way and saves. `Control` makes every data-parallel process stop at the same
step, whichever of them received the signal or ran out of time.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator


class Control:
    """Agrees among processes, at every step, on its token count and whether to stop.

    Over a CPU (gloo) group, so that no GPU synchronisation is needed: every process
    stops at the same step, whichever of them received the signal or ran out of time.
    """

    def __init__(self, accelerator: Accelerator) -> None:
        self.world_size = accelerator.num_processes
        self.group = None
        if self.world_size > 1:
            import torch.distributed as dist

            is_gloo = dist.get_backend() == "gloo"
            self.group = dist.group.WORLD if is_gloo else dist.new_group(backend="gloo")

    def _all_reduce(self, values: list[int], op: str) -> list[int]:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=self.group)
        return tensor.tolist()

    def exchange(self, tokens: int, signalled: bool, out_of_time: bool) -> tuple[int, bool, bool]:
        """The step's tokens summed over processes, whether any process received a stop
        signal, and whether any ran out of time."""
        total, signals, late = self._all_reduce([tokens, int(signalled), int(out_of_time)], "SUM")
        return total, signals > 0, late > 0

    def check_equal(self, value: int, what: str) -> None:
        """Raise if processes disagree on `value` (they would deadlock)."""
        high, neg_low = self._all_reduce([value, -value], "MAX")
        if high != -neg_low:
            raise ValueError(
                f"{what} differs between processes ({-neg_low} to {high}); it must be equal"
            )


@contextmanager
def stop_requests() -> Iterator[dict[str, str]]:
    """Catch SIGTERM and SIGINT while training; the yielded dict gets a "signal" key when
    one arrives. A second SIGINT interrupts at once."""
    requests: dict[str, str] = {}
    if threading.current_thread() is not threading.main_thread():
        yield requests  # handlers can only be installed from the main thread
        return

    def handle(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and "signal" in requests:
            raise KeyboardInterrupt
        requests["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requests
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
