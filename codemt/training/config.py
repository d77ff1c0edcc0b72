"""What a training run is given and where it stands: settings, the data contract, state.

`TrainSettings` says how to train and validates itself; `TrainData` is what the caller
supplies batches through; `TrainState` is where a run stands, saved in every checkpoint.

Conventions: a *step* is one optimiser update (`grad_accum` micro-batches on each of the
data-parallel processes); *tokens* are real source and target tokens (padding excluded),
summed over processes. Each micro-batch's loss is its mean over target tokens, and a step
averages micro-batches and processes alike; since batches are built by token budget, they
carry similar numbers of tokens, and this keeps one process with `grad_accum` k exactly
equivalent to k processes with the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from codemt.model import get_preset
from codemt.training.schedule import SCHEDULES

if TYPE_CHECKING:
    import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
IGNORE_INDEX = -100  # in labels: padding, no loss
OPTIMIZERS = ("adamw", "adafactor")
MIXED_PRECISION = ("no", "bf16", "fp16")


class TrainData(Protocol):
    """Deterministic batches of token ids for one training stage."""

    def batches(
        self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of one epoch for one data-parallel rank, in a fixed order given the seed,
        from the rank's batch number `start` on (resuming skips batches this way, so skipping
        must cost next to nothing); each dict has input_ids (batch, src_len), attention_mask
        (batch, src_len), labels (batch, tgt_len) with -100 on padding, as CPU tensors.
        Batches are built by token budget, so their shapes vary."""
        ...

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        """How many batches `batches` yields; equal on every rank."""
        ...

    def tokens(self, epoch: int) -> int:
        """The real (not padding) tokens of the epoch's batches, all ranks together. Needed
        only where a decaying schedule ends at `max_tokens` rather than `max_steps`."""
        ...


@dataclass(frozen=True)
class TrainSettings:
    """How to train.

    Attributes:
        preset: model size (see `codemt presets`); sets the defaults of `lr` and `warmup_steps`.
        lr: peak learning rate (default: the preset's, e.g. 9.1875e-5 for pymt5 as in the
            paper, 5e-4 for small).
        warmup_steps: linear warm-up length (default: the preset's, 5,000 for pymt5).
        schedule: "inverse_sqrt" (the paper's: lr * sqrt(warmup / step) after warm-up),
            "linear" or "cosine" (both decay to 0 at `max_steps`, or without it at the step
            where `max_tokens` will be reached, from the tokens of the first epoch's batches).
        optimizer: "adamw" (the paper's), or "adafactor" (T5's: each update scaled by its
            parameter's RMS, with T5's initialisation that moves the tiny attention weights
            and the unit-scale embeddings alike; no momentum; `lr` around 1e-2).
        betas, eps: AdamW's. weight_decay: decoupled weight decay, in both optimisers, of
            the weight matrices (not of layer-norm scales and biases).
        grad_clip: clip the global gradient norm to this (0: no clipping).
        grad_accum: micro-batches per optimiser step on each process.
        mixed_precision: "no", "bf16" or "fp16" (the paper's; T5 is prone to overflow in it).
        dropout: dropout rate (0 for pre-training; a checkpoint used as `init` takes this too).
        max_steps, max_tokens: stop after this many steps or tokens, counted over the whole
            run, resumes included. max_time: stop after this many seconds of this call (to
            fit a job's time limit). At least one of the three must be set.
        eval_every, save_every, log_every: in steps (0: only at the end of training).
        keep_last: how many checkpoints to keep (besides the best one, see `select_on`).
        select_on: a mode name (e.g. "signature+body->docstring"): at every evaluation the
            validation loss of that mode alone is logged too (`task_loss`), and the checkpoint
            where it was lowest is saved and named in `OUT/best`, which a run folder then
            stands for. More epochs can overfit one task while the others still improve.
        seed: seeds initialisation, dropout and anything else random in the loop.
        copy: give the model a copy mechanism (`codemt.pointer.PointerT5`): each output
            token is generated or copied from the source. A plain checkpoint used as `init`
            gets a fresh one; it must match the checkpoint a run resumes, and a checkpoint
            with one is fine-tuned only with copy.
        copy_lr_scale: the copy mechanism's parameters train at `lr` times this (their
            weight decay scaled alike). A fresh pointer in a trained model learns slowly at
            the model's fine-tuning rate; 10 did a little better in a 300-step fine-tune
            (docs/default-model.md). From scratch, 1 is enough.
    """

    preset: str = "small"
    optimizer: str = "adamw"
    lr: float | None = None
    warmup_steps: int | None = None
    schedule: str = "inverse_sqrt"
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "no"
    dropout: float = 0.0
    max_steps: int | None = None
    max_tokens: int | None = None
    max_time: float | None = None
    eval_every: int = 1000
    save_every: int = 1000
    log_every: int = 50
    keep_last: int = 3
    select_on: str | None = None
    seed: int = 0
    copy: bool = False
    copy_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        preset = get_preset(self.preset)
        # Frozen: defaults that depend on the preset are resolved once, here.
        if self.lr is None:
            object.__setattr__(self, "lr", preset.lr)
        if self.warmup_steps is None:
            object.__setattr__(self, "warmup_steps", preset.warmup_steps)
        object.__setattr__(self, "betas", tuple(self.betas))
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        if self.schedule == "inverse_sqrt" and self.warmup_steps < 1:
            raise ValueError("the inverse_sqrt schedule needs warmup_steps of at least 1")
        if self.schedule != "inverse_sqrt" and self.max_steps is None and self.max_tokens is None:
            raise ValueError(
                f"the {self.schedule} schedule decays to 0 at max_steps or max_tokens: set one"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        for name in ("eps", "weight_decay", "grad_clip", "dropout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not self.copy_lr_scale > 0:
            raise ValueError(f"copy_lr_scale must be positive, got {self.copy_lr_scale}")
        if self.copy_lr_scale != 1 and not self.copy:
            raise ValueError("copy_lr_scale is the copy mechanism's: set copy: true too")
        if self.dropout >= 1:
            raise ValueError(f"dropout must be below 1, got {self.dropout}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}"
            )
        for name in ("grad_accum", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_every", "save_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be 0 (only at the end) or more, got {getattr(self, name)}"
                )
        limits = (self.max_steps, self.max_tokens, self.max_time)
        if all(limit is None for limit in limits):
            raise ValueError("set at least one of max_steps, max_tokens and max_time")
        if any(limit is not None and limit <= 0 for limit in limits):
            raise ValueError("max_steps, max_tokens and max_time must be positive when set")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint to resume from."""

    step: int = 0  # optimiser updates done
    epoch: int = 0  # the epoch being read
    batch: int = 0  # batches of `epoch` this process has consumed
    tokens: int = 0  # real source + target tokens trained on, all processes
    train_seconds: float = 0.0  # time spent in the loop, all calls
    best_task_loss: float | None = None  # the lowest `task_loss` so far (see `select_on`)


def learning_rate(step: int, settings: TrainSettings, total: int | None = None) -> float:
    """The learning rate of optimiser update number `step` (counted from 1); a decaying
    schedule reaches 0 at step `total` (default: `settings.max_steps`)."""
    assert settings.lr is not None and settings.warmup_steps is not None
    total = settings.max_steps if total is None else total
    factor = SCHEDULES[settings.schedule](step, settings.warmup_steps, total)
    return settings.lr * factor


def decay_steps(settings: TrainSettings, train_data: TrainData, world_size: int = 1) -> int | None:
    """Where a decaying schedule reaches 0: `max_steps`, else the step that reaches
    `max_tokens` at the first epoch's tokens per step (epochs differ a little: their examples
    are drawn anew). None for `inverse_sqrt`, which never ends."""
    if settings.schedule == "inverse_sqrt":
        return None
    if settings.max_steps is not None:
        return settings.max_steps
    assert settings.max_tokens is not None and settings.warmup_steps is not None
    if not hasattr(train_data, "tokens"):
        raise ValueError(
            f"the {settings.schedule} schedule ends at max_tokens only for training data that "
            f"counts its tokens (TrainData.tokens): set max_steps"
        )
    batches = train_data.num_batches(0)  # all of them: `tokens` counts them all
    if not batches:
        raise ValueError("the training data has no batches for epoch 0")
    per_step = train_data.tokens(0) / batches * world_size * settings.grad_accum
    total = max(1, math.ceil(settings.max_tokens / per_step))
    if total <= settings.warmup_steps:
        raise ValueError(
            f"the {settings.schedule} schedule would reach 0 at step {total:,} (max_tokens "
            f"{settings.max_tokens:,}), within the {settings.warmup_steps:,} warm-up steps: "
            f"set fewer warm-up steps or more tokens"
        )
    return total
