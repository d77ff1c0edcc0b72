"""Training: an explicit loop on Hugging Face Accelerate, with exact resume.

The same code runs on a laptop CPU, one GPU, and many GPUs, data-parallel (`accelerate
launch --multi_gpu` or `torchrun --nproc_per_node N`; several CPU processes with torchrun).
The caller supplies batches through `TrainData` (the data layer
builds them from the corpus by token budget); `train` owns everything else: the model, the
optimiser and its schedule, evaluation, logging and checkpoints.

A run folder looks like::

    OUT/step-000100/      a checkpoint (see `codemt.model`), with train_log.csv and state/
    OUT/step-000200/      ... the last `keep_last` are kept
    OUT/latest            the name of the newest checkpoint
    OUT/best              the checkpoint where the selection task's validation loss was
                          lowest (runs given `task_data`), kept whatever `keep_last`
    OUT/train_log.csv     one row per logged step (copied into each checkpoint)
    OUT/tensorboard/      when `tensorboard` is installed

Every checkpoint can resume training exactly: `state/` holds the optimiser and schedule
states, the RNG states of every process and the data position (epoch, batch), so a run
stopped and resumed gives the same losses as one that never stopped. A checkpoint is written
into a temporary folder and renamed, so a crash never leaves half of one; SIGTERM and SIGINT
finish the current optimiser step, save and return. The resume state is that of data
parallelism (DDP); sharded optimisers (FSDP, DeepSpeed) would need accelerate's `save_state`.

Conventions: a *step* is one optimiser update (`grad_accum` micro-batches on each of the
data-parallel processes); *tokens* are real source and target tokens (padding excluded),
summed over processes. Each micro-batch's loss is its mean over target tokens, and a step
averages micro-batches and processes alike; since batches are built by token budget, they
carry similar numbers of tokens, and this keeps one process with `grad_accum` k exactly
equivalent to k processes with the same global batch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from codemt import tokenizer as tokenization
from codemt.model import (
    BEST_FILE,
    CODEMT_FILE,
    LATEST_FILE,
    POINTER_PARTS,
    PRESETS,
    build_model,
    count_parameters,
    get_preset,
    has_pointer,
    load_checkpoint,
    resolve_checkpoint,
    with_pointer,
    write_model,
)

if TYPE_CHECKING:
    from transformers import T5ForConditionalGeneration

LOG_FILE = "train_log.csv"
# Every file of a checkpoint with its size and SHA-256, written last: what resuming checks.
CHECKSUM_FILE = "checksums.json"
STATE_DIR = "state"
LOG_FIELDS = (
    "step",
    "epoch",
    "tokens",
    "loss",
    "lr",
    "grad_norm",
    "valid_loss",
    "task_loss",
    "tokens_per_s",
    "elapsed_s",
    # The share of the interval the loop spent getting its batches: building them (on a
    # CPU) or waiting for the workers that build them ahead (on a GPU). Near 1: input-bound.
    "input_share",
)
MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
# On a GPU, batches are built ahead in this many worker processes, so the device never waits
# for Python between steps (on a CPU building one costs ~1% of a step). Processes, not a
# thread: building a 64k-token batch holds the interpreter ~30 ms, and a thread doing so
# starves the loop that launches the GPU's work. Not in pinned memory: token-budget batches
# change shape every step, so each would pin a new buffer, and on an H200 that halved the
# loop's speed (226k against 492k tokens/s, benchmarks/gpu_loop_overhead.py).
GPU_WORKERS = 4
BATCHES_AHEAD = 4  # per worker
MIXED_PRECISION = ("no", "bf16", "fp16")
IGNORE_INDEX = -100


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


# Schedules map (step, warmup, total) to a factor of the peak learning rate; `step` counts
# optimiser updates from 1, so the first update already has a non-zero rate.
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
OPTIMIZERS = ("adamw", "adafactor")


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


def cpu_has_bf16() -> bool:
    """Whether this machine's CPU multiplies in bfloat16 natively (AVX512-BF16 or AMX).

    There, bf16 autocast trains the recipe's `small` model 1.4x faster than float32
    (docs/training-speed.md); elsewhere oneDNN emulates bfloat16, which is slower than float32. Asks
    PyTorch's own CPU checks (x86 only; False where this PyTorch lacks them).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


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


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after saving `checkpoint`; resume to continue."""

    def __init__(self, checkpoint: Path, signal_name: str) -> None:
        super().__init__(
            f"stopped by {signal_name}; saved {checkpoint}, resume the run to continue"
        )
        self.checkpoint = checkpoint
        self.signal_name = signal_name


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint to resume from."""

    step: int = 0  # optimiser updates done
    epoch: int = 0  # the epoch being read
    batch: int = 0  # batches of `epoch` this process has consumed
    tokens: int = 0  # real source + target tokens trained on, all processes
    train_seconds: float = 0.0  # time spent in the loop, all calls
    best_task_loss: float | None = None  # the lowest `task_loss` so far (see `select_on`)


def train(
    train_data: TrainData,
    settings: TrainSettings,
    out_dir: Path | str,
    tokenizer_dir: Path | str,
    *,
    valid_data: TrainData | None = None,
    task_data: TrainData | None = None,
    init: Path | str | None = None,
    resume: bool = False,
    stage: str = "pretrain",
    modes: dict[str, Any] | None = None,
    corpus_digest: str | None = None,
    progress: bool = True,
) -> Path:
    """Train a model of `settings.preset` on `train_data`; return the final checkpoint folder.

    On SIGTERM or SIGINT the current step is finished and saved at once (not evaluated),
    then `TrainingInterrupted` is raised (it names the checkpoint).

    Args:
        train_data: the training batches, read epoch after epoch until a limit is reached.
        settings: what to train and how.
        out_dir: the run folder (checkpoints, `latest`, logs).
        tokenizer_dir: the tokenizer folder; its ids must match the batches. It is copied
            into every checkpoint, and fixes the vocabulary size and special ids.
        valid_data: batches to report the validation loss on (epoch 0 is used).
        task_data: validation batches of `settings.select_on`'s mode alone (epoch 0).
        init: a checkpoint (or run folder) to start from instead of random weights, e.g. a
            pre-trained model for multi-mode training; its preset must be `settings.preset`.
        resume: continue the run in `out_dir` from its newest checkpoint (starting afresh if
            it has none). Without it, an `out_dir` that holds checkpoints is an error.
        stage, modes, corpus_digest: recorded in `codemt.json` (the training stage, the
            modes/control codes the data layer uses, the corpus manifest's digest).
        progress: show a progress bar.
    """
    out_dir = Path(out_dir)
    tokenizer_dir = Path(tokenizer_dir)
    if (task_data is None) != (settings.select_on is None):
        raise ValueError("select_on and task_data go together: its validation batches are needed")
    start = _resume_point(out_dir, resume)
    # Accelerate keeps one state per process and refuses a second Accelerator of another
    # precision; a second run in one process (a recipe's next stage, a notebook) may need
    # one. Forget it (with Accelerate's own reset, private to it), but not the processes'
    # own state (devices, process group). So two trainings must not share one process at
    # the same time, in threads.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        mixed_precision=settings.mixed_precision,
        gradient_accumulation_steps=settings.grad_accum,
        # Accelerate sets up data parallelism on CPUs only when told the run is on CPUs
        # (`accelerate launch --cpu` tells it); under plain torchrun, tell it here.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
    )
    cpu_bf16 = accelerator.device.type == "cpu" and settings.mixed_precision == "bf16"
    if cpu_bf16 and accelerator.is_main_process and not cpu_has_bf16():
        print(
            "codemt train: warning: this CPU has no bfloat16 instructions, so bf16 is emulated "
            "and slower than float32; train with mixed_precision 'no' here",
            file=sys.stderr,
        )
    set_seed(settings.seed)
    model = _initial_model(settings, tokenizer_dir, start or init, resuming=start is not None)
    optimizer = _optimizer(model, settings, fused=accelerator.device.type == "cuda")
    # Not prepared by accelerate: its scheduler wrapper steps once per process per update,
    # and our schedule counts updates, whatever the number of processes.
    total = decay_steps(settings, train_data, accelerator.num_processes)
    if total is not None and settings.max_steps is None and accelerator.is_main_process:
        print(f"{settings.schedule} schedule: the learning rate reaches 0 at step {total:,}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: learning_rate(done + 1, settings, total) / settings.lr
    )
    if task_data is not None and not task_data.num_batches(0, world_size=accelerator.num_processes):
        raise ValueError(
            f"select_on {settings.select_on!r}: too few validation batches of it for "
            f"{accelerator.num_processes} processes (each needs one)"
        )
    model, optimizer = accelerator.prepare(model, optimizer)
    if start is not None:
        state = _restore(start, out_dir, optimizer, scheduler, accelerator)
    else:
        state = TrainState()
        # Each process its own dropout masks; initialisation above was the same everywhere.
        set_seed(settings.seed, device_specific=True)
    if start is not None:  # the run's starting point, whether or not this call repeats it
        before = json.loads((start / CODEMT_FILE).read_text(encoding="utf-8"))
        init = before["init"]
        if before["settings"].get("select_on") != settings.select_on:
            # Another task (or none): the best so far was another task's.
            state.best_task_loss = None
            if accelerator.is_main_process:
                (out_dir / BEST_FILE).unlink(missing_ok=True)
    meta = {
        "preset": settings.preset,
        "stage": stage,
        "modes": modes or {},
        "corpus_digest": corpus_digest,
        "init": str(init) if init is not None else None,
        "context": PRESETS[settings.preset].context,
        "parameters": count_parameters(model),
        "settings": settings.to_dict(),
    }
    loop = _Loop(
        accelerator, model, optimizer, scheduler, settings, state, out_dir, tokenizer_dir, meta
    )
    return loop.run(train_data, valid_data, task_data, progress)


def _resume_point(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run resumes from: the one `latest` names, or, where that one is
    damaged or gone, the newest intact one (saying which and why); None for a new run."""
    saved = sorted(
        (p for p in out_dir.glob("step-*") if p.is_dir() and p.name[5:].isdigit()),
        key=_checkpoint_step,
        reverse=True,
    )
    if not (out_dir / LATEST_FILE).is_file() and not saved:
        return None
    if not resume:
        raise ValueError(
            f"{out_dir} already holds checkpoints; resume the run (resume=True, --resume) "
            f"or choose another output folder"
        )
    named = None
    if (out_dir / LATEST_FILE).is_file():
        name = (out_dir / LATEST_FILE).read_text(encoding="utf-8", errors="replace").strip()
        named = out_dir / name if name and "/" not in name and name not in (".", "..") else None
    if named is not None and named in saved:
        saved = [named, *(p for p in saved if p != named)]
    problems = []
    if named is None or not named.is_dir():
        problems.append(f"{out_dir / LATEST_FILE} names no checkpoint of this run")
    for checkpoint in saved:
        problem = checkpoint_damage(checkpoint)
        if problem is None:
            if problems:
                print(
                    f"warning: {'; '.join(problems)}: resuming from {checkpoint}",
                    file=sys.stderr,
                )
            return checkpoint
        problems.append(f"{checkpoint.name} is damaged ({problem})")
    raise ValueError(
        f"{out_dir}: no intact checkpoint to resume from ({'; '.join(problems)}); start a new "
        f"run in another folder, or from a checkpoint you trust with --init"
    )


def checkpoint_damage(checkpoint: Path) -> str | None:
    """Why `checkpoint` (a folder `_Loop.save` wrote) cannot be resumed from, or None if it
    can: every file its checksum list names present with its size and SHA-256, and the
    list itself readable. A checkpoint older than checksum lists is read instead."""
    listing = checkpoint / CHECKSUM_FILE
    if not listing.is_file():
        return _unlisted_damage(checkpoint)
    try:
        expected = json.loads(listing.read_text(encoding="utf-8"))
        files = dict(expected["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{CHECKSUM_FILE} unreadable: {error}"
    for name, (size, digest) in sorted(files.items()):
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, {size:,} were written"
        if _sha256(path) != digest:
            return f"{name} is not the file that was written (its SHA-256 differs)"
    return None


def _unlisted_damage(checkpoint: Path) -> str | None:
    """Why a checkpoint without a checksum list cannot be resumed from: a file missing or
    one that does not load."""
    from safetensors import safe_open

    def weights(path: Path) -> None:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                f.get_tensor(key)

    def json_file(path: Path) -> None:
        json.loads(path.read_text(encoding="utf-8"))

    def torch_file(path: Path) -> None:
        # rng-*.pt holds numpy's state, which weights_only loading refuses.
        torch.load(path, map_location="cpu", weights_only=not path.name.startswith("rng-"))

    loaders = {"config.json": json_file, CODEMT_FILE: json_file}
    loaders |= {"model.safetensors": weights, f"{STATE_DIR}/progress.json": json_file}
    loaders |= {f"{STATE_DIR}/optimizer.pt": torch_file, f"{STATE_DIR}/scheduler.pt": torch_file}
    rngs = sorted((checkpoint / STATE_DIR).glob("rng-*.pt"))
    loaders |= {path.relative_to(checkpoint).as_posix(): torch_file for path in rngs}
    for name, load in loaders.items():
        if not (checkpoint / name).is_file():
            return f"{name} is missing"
        try:
            load(checkpoint / name)
        except Exception as error:  # noqa: BLE001 - any failure to load is damage, named
            return f"{name} does not load: {type(error).__name__}: {error}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _initial_model(
    settings: TrainSettings, tokenizer_dir: Path, source: Path | str | None, resuming: bool
) -> T5ForConditionalGeneration:
    tok = tokenization.load_tokenizer(tokenizer_dir)
    vocab_size = tok.get_vocab_size()
    excluded = [tokenization.special_token_id(tok, t) for t in tokenization.SPECIAL_TOKENS]
    if source is None:
        pad_id = tokenization.special_token_id(tok, tokenization.PAD_TOKEN)
        eos_id = tokenization.special_token_id(tok, tokenization.EOS_TOKEN)
        # T5 starts decoding from the padding id.
        model = build_model(
            settings.preset,
            vocab_size,
            pad_id,
            eos_id,
            pad_id,
            dropout=settings.dropout,
            copy_excluded_ids=excluded if settings.copy else None,
        )
    else:
        checkpoint = load_checkpoint(source, dropout=settings.dropout)
        if checkpoint.meta.get("preset") != settings.preset:
            raise ValueError(
                f"{checkpoint.path} is a {checkpoint.meta.get('preset')!r} model but the "
                f"settings ask for preset {settings.preset!r}; use the same preset"
            )
        model = checkpoint.model
        if model.config.vocab_size != vocab_size:
            raise ValueError(
                f"{checkpoint.path} has a vocabulary of {model.config.vocab_size} but the "
                f"tokenizer in {tokenizer_dir} has {vocab_size}; use the checkpoint's tokenizer"
            )
        if has_pointer(model.config) and not settings.copy:
            raise ValueError(
                f"{checkpoint.path} has a copy mechanism: set copy: true in the config's "
                f"train section to {'resume' if resuming else 'fine-tune'} it"
            )
        if resuming and settings.copy and not has_pointer(model.config):
            raise ValueError(
                f"{checkpoint.path} was trained without a copy mechanism: resume it without "
                f"copy: true, or start a new run from it (--init) with copy"
            )
        if settings.copy:
            model = with_pointer(model, excluded)
    return model.train()


def _optimizer(
    model: torch.nn.Module, settings: TrainSettings, fused: bool
) -> torch.optim.Optimizer:
    # Layer-norm scales and biases are not decayed. With a copy_lr_scale other than 1, a
    # copy mechanism's parameters are in groups of their own at lr * copy_lr_scale (the
    # scheduler scales every group's lr); at 1 they share the others', as before the setting.
    own = settings.copy_lr_scale != 1
    parts = [(own and n.startswith(POINTER_PARTS), p) for n, p in model.named_parameters()]
    groups = []
    for pointer, lr in ((False, settings.lr), (True, settings.lr * settings.copy_lr_scale)):
        for decayed in (True, False):
            chosen = [p for mine, p in parts if mine == pointer and (p.ndim >= 2) == decayed]
            if chosen:
                decay = settings.weight_decay if decayed else 0.0
                groups.append({"params": chosen, "weight_decay": decay, "lr": lr})
    if settings.optimizer == "adafactor":
        from codemt.optim import Adafactor

        # The update is relative to each parameter's RMS.
        return Adafactor(groups, lr=settings.lr)
    return torch.optim.AdamW(
        groups, lr=settings.lr, betas=settings.betas, eps=settings.eps, fused=fused
    )


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])


def _restore(
    checkpoint: Path,
    out_dir: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    accelerator: Accelerator,
) -> TrainState:
    """Load the optimiser, schedule, RNG and data position of `checkpoint` (weights are
    already loaded) and roll the run's log back to it."""
    state_dir = checkpoint / STATE_DIR
    progress = json.loads((state_dir / "progress.json").read_text(encoding="utf-8"))
    if progress["world_size"] != accelerator.num_processes:
        raise ValueError(
            f"{checkpoint} was written by {progress['world_size']} processes, and each one's "
            f"data position depends on that: resume with {progress['world_size']} processes "
            f"(now {accelerator.num_processes})"
        )
    # This call's settings, not the checkpoint's: the optimiser's state holds every group's
    # (learning rate, weight decay, betas, ...) and the scheduler's the base learning rates,
    # and a resume with other settings would otherwise keep the old ones.
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    saved = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
    if len(saved["param_groups"]) != len(fresh):
        raise ValueError(
            f"{checkpoint}: its optimiser state has {len(saved['param_groups'])} parameter "
            f"groups, these settings make {len(fresh)} (a copy mechanism's parameters have "
            f"groups of their own when copy_lr_scale is not 1): resume with the "
            f"copy_lr_scale it was trained with, or start a new run from it (--init)"
        )
    optimizer.load_state_dict(saved)
    schedule = torch.load(state_dir / "scheduler.pt", weights_only=True)
    scheduler.load_state_dict(schedule["scheduler"])
    scheduler.base_lrs = [group["initial_lr"] for group in fresh]
    for group, current, factor in zip(
        optimizer.param_groups, fresh, scheduler.lr_lambdas, strict=True
    ):
        group.update(current)
        group["lr"] = group["initial_lr"] * factor(scheduler.last_epoch)
    if accelerator.scaler is not None and schedule["scaler"] is not None:
        accelerator.scaler.load_state_dict(schedule["scaler"])
    # Our own file, holding numpy's RNG state, which weights_only loading refuses.
    rng = torch.load(state_dir / f"rng-{accelerator.process_index}.pt", weights_only=False)
    _set_rng_state(rng)
    if accelerator.is_main_process:
        # Rows logged after the checkpoint (before a crash) would be logged again.
        if (checkpoint / LOG_FILE).is_file():
            shutil.copy2(checkpoint / LOG_FILE, out_dir / LOG_FILE)
            _upgrade_log(out_dir / LOG_FILE)
        else:  # saved before the first log row
            (out_dir / LOG_FILE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return TrainState(**progress["state"])


class _Control:
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
def _stop_requests() -> Iterator[dict[str, str]]:
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


class _Loop:
    """The training loop and what it writes: logs, evaluations and checkpoints."""

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        settings: TrainSettings,
        state: TrainState,
        out_dir: Path,
        tokenizer_dir: Path,
        meta: dict[str, Any],
    ) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.settings = settings
        self.state = state
        self.out_dir = out_dir
        self.tokenizer_dir = tokenizer_dir
        self.meta = meta
        self.rank = accelerator.process_index
        self.world_size = accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.control = _Control(accelerator)
        self.tensorboard: Any = None

    def run(
        self,
        train_data: TrainData,
        valid_data: TrainData | None,
        task_data: TrainData | None,
        progress: bool,
    ) -> Path:
        """Train until a limit is reached or a stop is requested; return the last checkpoint."""
        settings, state, accelerator = self.settings, self.state, self.accelerator
        device = accelerator.device
        if self._limit_reached(0.0):
            return resolve_checkpoint(self.out_dir, newest=True)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.tensorboard = _tensorboard_writer(self.out_dir / "tensorboard")
        bar = self._progress_bar(progress)
        t_start = t_log = time.perf_counter()
        seconds_before = state.train_seconds
        tokens_at_log = state.tokens
        paused = 0.0  # seconds spent evaluating and saving since the last log
        loss_sum = torch.zeros((), device=device)  # summed on device: no sync until logged
        micro_batches = step_tokens = 0
        grad_norm = lr = None
        getting = _TimedBatches()  # the time spent getting batches since the last log
        with _stop_requests() as requests, bar, contextlib.ExitStack() as prefetching:
            stop = False
            while not stop:
                n = train_data.num_batches(state.epoch, rank=self.rank, world_size=self.world_size)
                self.control.check_equal(n, f"the number of batches of epoch {state.epoch}")
                if n == 0:
                    raise ValueError(f"the training data has no batches for epoch {state.epoch}")
                # Resuming starts after the batches already trained on.
                batches = train_data.batches(
                    state.epoch, rank=self.rank, world_size=self.world_size, start=state.batch
                )
                if device.type == "cuda" and GPU_WORKERS > 0:
                    # Closed on leaving the loop, also when it stops mid-epoch.
                    batches = prefetching.enter_context(
                        contextlib.closing(
                            _built_ahead(
                                train_data, state.epoch, self.rank, self.world_size, state.batch
                            )
                        )
                    )
                for batch in getting.over(batches):
                    state.batch += 1
                    step_tokens += _real_tokens(batch)
                    with accelerator.accumulate(self.model):
                        inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS}
                        loss = self.model(**inputs, use_cache=False).loss
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            clip = settings.grad_clip or math.inf
                            grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), clip)
                            lr = self.optimizer.param_groups[0]["lr"]
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    loss_sum += loss.detach()
                    micro_batches += 1
                    if not accelerator.sync_gradients:
                        continue  # mid-accumulation: a step is never cut short

                    if not accelerator.optimizer_step_was_skipped:  # fp16 overflow
                        self.scheduler.step()
                    state.step += 1
                    elapsed = time.perf_counter() - t_start
                    out_of_time = settings.max_time is not None and elapsed >= settings.max_time
                    tokens, signalled, late = self.control.exchange(
                        step_tokens, "signal" in requests, out_of_time
                    )
                    state.tokens += tokens
                    state.train_seconds = seconds_before + elapsed
                    step_tokens = 0
                    ends = late or self._limit_reached(elapsed)
                    stop = signalled or ends
                    self._advance(bar, tokens, elapsed)

                    row: dict[str, Any] = {}
                    if _due(state.step, settings.log_every, stop):
                        now = time.perf_counter()
                        loss_value = accelerator.reduce(loss_sum, "mean").item() / micro_batches
                        interval = now - t_log - paused
                        row |= {
                            "loss": loss_value,
                            "lr": lr,
                            "grad_norm": float(grad_norm) if grad_norm is not None else None,
                            "tokens_per_s": (state.tokens - tokens_at_log) / interval,
                            "input_share": round(getting.seconds / interval, 4),
                        }
                        loss_sum.zero_()
                        micro_batches = 0
                        getting.seconds = 0.0
                        t_log, tokens_at_log, paused = now, state.tokens, 0.0
                        bar.set_postfix(
                            loss=f"{loss_value:.4f}",
                            lr=f"{lr:.2e}",
                            tok_s=f"{row['tokens_per_s']:,.0f}",
                        )
                    t_pause = time.perf_counter()
                    best = False
                    # A stop signal saves at once, unevaluated: a scheduler's grace period
                    # is seconds, an evaluation (select_on on a CPU) minutes.
                    if not signalled and _due(state.step, settings.eval_every, ends):
                        if valid_data is not None:
                            row["valid_loss"] = self.evaluate(valid_data)
                        if task_data is not None:
                            row["task_loss"] = self.evaluate(task_data)
                            best = self._improves(row["task_loss"])
                    if row:
                        self._log(row)
                    if best or _due(state.step, settings.save_every, stop):
                        self.save(best)
                    paused += time.perf_counter() - t_pause
                    if stop:
                        break
                else:
                    state.epoch += 1
                    state.batch = 0
        if self.tensorboard is not None:
            self.tensorboard.close()
        checkpoint = self.out_dir / _checkpoint_name(state.step)
        if "signal" in requests:
            # Saved: tell the caller, so that a command running several stages stops here
            # instead of going on to the next one.
            raise TrainingInterrupted(checkpoint, requests["signal"])
        return checkpoint

    def _improves(self, task_loss: float) -> bool:
        """Whether `task_loss` is the run's lowest so far (then recorded as such)."""
        if math.isnan(task_loss):
            return False
        best = self.state.best_task_loss
        if best is not None and task_loss >= best:
            return False
        self.state.best_task_loss = task_loss
        return True

    def _limit_reached(self, elapsed: float) -> bool:
        s, state = self.settings, self.state
        return (
            (s.max_steps is not None and state.step >= s.max_steps)
            or (s.max_tokens is not None and state.tokens >= s.max_tokens)
            or (s.max_time is not None and elapsed >= s.max_time)
        )

    def _progress_bar(self, enabled: bool) -> tqdm:
        # Counts whichever limit is set, so that tqdm can show an ETA.
        s, state = self.settings, self.state
        if s.max_steps is not None:
            total, unit, initial = s.max_steps, "step", state.step
        elif s.max_tokens is not None:
            total, unit, initial = s.max_tokens, "tok", state.tokens
        else:
            total, unit, initial = s.max_time, "s", 0
        return tqdm(
            total=total,
            initial=initial,
            unit=unit,
            unit_scale=unit == "tok",
            disable=not (enabled and self.accelerator.is_local_main_process),
            dynamic_ncols=True,
        )

    def _advance(self, bar: tqdm, tokens: int, elapsed: float) -> None:
        if self.settings.max_steps is not None:
            bar.update(1)
        elif self.settings.max_tokens is not None:
            bar.update(tokens)
        else:
            bar.update(elapsed - bar.n)

    @torch.no_grad()
    def evaluate(self, data: TrainData) -> float:
        """Mean loss per target token over epoch 0 of `data`, all processes together."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        device = self.accelerator.device
        totals = torch.zeros(2, device=device, dtype=torch.float64)  # (loss sum, tokens)
        with self.accelerator.autocast():
            for batch in data.batches(0, rank=self.rank, world_size=self.world_size):
                inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS}
                n = (inputs["labels"] != IGNORE_INDEX).sum()
                loss = model(**inputs, use_cache=False).loss
                totals += torch.stack([loss.double() * n, n.double()])
        model.train()
        loss_sum, tokens = self.accelerator.reduce(totals, "sum").tolist()
        return loss_sum / tokens if tokens else math.nan

    def _log(self, values: dict[str, Any]) -> None:
        if not self.is_main:
            return
        state = self.state
        row = {"step": state.step, "epoch": state.epoch, "tokens": state.tokens}
        row |= {**values, "elapsed_s": round(state.train_seconds, 3)}
        path = self.out_dir / LOG_FILE
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tensorboard is not None:
            for key in ("loss", "lr", "grad_norm", "valid_loss", "task_loss", "tokens_per_s"):
                if row.get(key) is not None:
                    self.tensorboard.add_scalar(key, row[key], state.step)

    def save(self, best: bool = False) -> Path:
        """Write a checkpoint of the current step atomically (named in `best` too when it
        is the best so far); keep the last `keep_last` and the best."""
        accelerator, state = self.accelerator, self.state
        name = _checkpoint_name(state.step)
        tmp = self.out_dir / f".tmp-{name}"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash
            (tmp / STATE_DIR).mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(_rng_state(), tmp / STATE_DIR / f"rng-{self.rank}.pt")
        if self.is_main:
            progress = {"state": asdict(state), "world_size": self.world_size}
            meta = {**self.meta, "progress": asdict(state)}
            write_model(accelerator.unwrap_model(self.model), tmp, self.tokenizer_dir, meta)
            torch.save(self.optimizer.state_dict(), tmp / STATE_DIR / "optimizer.pt")
            scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            torch.save(
                {"scheduler": self.scheduler.state_dict(), "scaler": scaler},
                tmp / STATE_DIR / "scheduler.pt",
            )
            (tmp / STATE_DIR / "progress.json").write_text(
                json.dumps(progress, indent=2), encoding="utf-8"
            )
            if (self.out_dir / LOG_FILE).is_file():  # none yet before the first log row
                shutil.copy2(self.out_dir / LOG_FILE, tmp / LOG_FILE)
        accelerator.wait_for_everyone()
        if self.is_main:
            _write_checksums(tmp)
            _publish(tmp, self.out_dir, name, self.settings.keep_last, best)
        accelerator.wait_for_everyone()
        return self.out_dir / name


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


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _ignore_stop_signals(worker_id: int) -> None:
    """In a loader worker: Ctrl-C and `kill` reach the whole process group, and a worker
    that died of them would leave the loop waiting for its batch instead of saving; the
    loop stops its workers itself. (Forked with these signals blocked: none is missed.)"""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _built_ahead(
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


class _TimedBatches:
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


def _due(step: int, every: int, last: bool) -> bool:
    return last or (every > 0 and step % every == 0)


def _real_tokens(batch: dict[str, torch.Tensor]) -> int:
    # CPU tensors: counting them costs no device synchronisation.
    return int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())


def _checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _upgrade_log(path: Path) -> None:
    """Rewrite a log of an older version's columns (fewer of them) with today's, atomically."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames == list(LOG_FIELDS):
            return
        rows = list(reader)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _write_checksums(checkpoint: Path) -> None:
    """List every file of `checkpoint` with its size and SHA-256 (`checkpoint_damage`)."""
    files = {
        path.relative_to(checkpoint).as_posix(): [path.stat().st_size, _sha256(path)]
        for path in sorted(checkpoint.rglob("*"))
        if path.is_file()
    }
    (checkpoint / CHECKSUM_FILE).write_text(json.dumps({"files": files}, indent=1), "utf-8")


def _checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def _publish(tmp: Path, out_dir: Path, name: str, keep_last: int, best: bool = False) -> None:
    """Rename the finished `tmp` into place, point `latest` (and with `best`, `best`) at it,
    drop old checkpoints but the best."""
    final = out_dir / name
    old = out_dir / f".old-{name}"
    if final.exists():  # the same step saved again after a resume
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    # `best` first: a kill between the two leaves `latest` behind, and resuming redoes it.
    for pointer in (BEST_FILE, LATEST_FILE) if best else (LATEST_FILE,):
        pointer_tmp = out_dir / f".{pointer}.tmp"
        pointer_tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(pointer_tmp, out_dir / pointer)
    best_file = out_dir / BEST_FILE
    kept = best_file.read_text(encoding="utf-8").strip() if best_file.is_file() else None
    checkpoints = sorted((p for p in out_dir.glob("step-*") if p.is_dir()), key=_checkpoint_step)
    for path in checkpoints[:-keep_last]:
        if path.name != kept:
            shutil.rmtree(path)


def _tensorboard_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))
