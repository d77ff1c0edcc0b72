"""Learning-rate schedules: each maps (step, warmup, total) to a factor of the peak rate.

`step` counts optimiser updates from 1, so the first update already has a non-zero rate;
`total` is where a decaying schedule reaches 0 (None for `inverse_sqrt`, which never ends).
`codemt.training.config.learning_rate` applies one to a run's settings.
"""

from __future__ import annotations

import math


def _inverse_sqrt(step: int, warmup: int, total: int | None) -> float:
    return step / warmup if step < warmup else math.sqrt(warmup / step)


def _linear(step: int, warmup: int, total: int | None) -> float:
    assert total is not None
    if step < warmup:
        return step / warmup
    return max(0.0, (total + 1 - step) / max(1, total + 1 - warmup))


def _cosine(step: int, warmup: int, total: int | None) -> float:
    assert total is not None
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total + 1 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES = {"inverse_sqrt": _inverse_sqrt, "linear": _linear, "cosine": _cosine}
