"""The training loop: `train` sets a run up, `_Loop` trains it step by step.

The caller supplies batches through `TrainData` (the data layer builds them from the corpus
by token budget); `train` owns everything else: the model, the optimiser and its schedule,
evaluation, logging and checkpoints. The same code runs on a laptop CPU, one GPU, and many
GPUs, data-parallel (`accelerate launch --multi_gpu` or `torchrun --nproc_per_node N`;
several CPU processes with torchrun). SIGTERM and SIGINT finish the current optimiser step,
save and return (`TrainingInterrupted`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from codemt import tokenizer as tokenization
from codemt.model import (
    BEST_FILE,
    CODEMT_FILE,
    PRESETS,
    build_model,
    count_parameters,
    cpu_has_bf16,
    has_pointer,
    load_checkpoint,
    resolve_checkpoint,
    with_pointer,
    write_model,
)
from codemt.training import prefetch
from codemt.training.checkpoint import (
    LOG_FIELDS,
    LOG_FILE,
    STATE_DIR,
    checkpoint_name,
    publish,
    restore_state,
    resume_point,
    rng_state,
    write_checksums,
)
from codemt.training.config import (
    IGNORE_INDEX,
    MODEL_INPUTS,
    TrainData,
    TrainSettings,
    TrainState,
    decay_steps,
    learning_rate,
)
from codemt.training.control import Control, stop_requests
from codemt.training.optim import build_optimizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after saving `checkpoint`; resume to continue."""

    def __init__(self, checkpoint: Path, signal_name: str) -> None:
        super().__init__(
            f"stopped by {signal_name}; saved {checkpoint}, resume the run to continue"
        )
        self.checkpoint = checkpoint
        self.signal_name = signal_name


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
    tokenizer: Tokenizer | None = None,
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
        tokenizer: the tokenizer of `tokenizer_dir`, where the caller has it loaded already.
    """
    out_dir = Path(out_dir)
    tokenizer_dir = Path(tokenizer_dir)
    if (task_data is None) != (settings.select_on is None):
        raise ValueError("select_on and task_data go together: its validation batches are needed")
    start = resume_point(out_dir, resume)
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
    tok = tokenizer or tokenization.load_tokenizer(tokenizer_dir)
    model = _initial_model(settings, tok, tokenizer_dir, start or init, resuming=start is not None)
    optimizer = build_optimizer(model, settings, fused=accelerator.device.type == "cuda")
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
        state = restore_state(start, out_dir, optimizer, scheduler, accelerator)
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
        "corpus_digests": corpus_lineage(init, corpus_digest),
        "init": str(init) if init is not None else None,
        "context": PRESETS[settings.preset].context,
        "parameters": count_parameters(model),
        "settings": settings.to_dict(),
    }
    loop = _Loop(
        accelerator, model, optimizer, scheduler, settings, state, out_dir, tokenizer_dir, meta
    )
    return loop.run(train_data, valid_data, task_data, progress)


def corpus_lineage(init: Path | str | None, corpus_digest: str | None) -> list[str] | None:
    """The digests of every corpus the weights were trained on, the first stage's first:
    `init`'s (as its `codemt.json` records them) and then `corpus_digest`. None where one is
    unknown: no digest given, or an init that records none (a model from before, or one
    not of codemt)."""
    if corpus_digest is None:
        return None
    if init is None:
        return [corpus_digest]
    try:
        before = json.loads((resolve_checkpoint(init) / CODEMT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    earlier = before.get("corpus_digests")
    return None if earlier is None else [*earlier, corpus_digest]


def _initial_model(
    settings: TrainSettings,
    tok: Tokenizer,
    tokenizer_dir: Path,
    source: Path | str | None,
    resuming: bool,
) -> T5ForConditionalGeneration:
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


@dataclass
class _Meter:
    """This call's clock, and what the loop adds up between two log rows."""

    t_start: float  # when this call started training
    seconds_before: float  # the training time of the calls before (a resumed run)
    t_log: float  # when the last row was logged
    tokens_at_log: int
    loss_sum: torch.Tensor  # summed on the device: no sync until logged
    micro_batches: int = 0
    step_tokens: int = 0  # this process's real tokens of the step under way
    paused: float = 0.0  # seconds spent evaluating and saving since the last log
    grad_norm: Any = None  # of the last step
    lr: float | None = None  # of the last step
    getting: prefetch.TimedBatches = field(default_factory=prefetch.TimedBatches)


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
        self.device = accelerator.device
        self.rank = accelerator.process_index
        self.world_size = accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.control = Control(accelerator)
        self.tensorboard: Any = None

    def run(
        self,
        train_data: TrainData,
        valid_data: TrainData | None,
        task_data: TrainData | None,
        progress: bool,
    ) -> Path:
        """Train until a limit is reached or a stop is requested; return the last checkpoint."""
        if self._limit_reached(0.0):
            return resolve_checkpoint(self.out_dir, newest=True)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.tensorboard = _tensorboard_writer(self.out_dir / "tensorboard")
        bar = self._progress_bar(progress)
        t_start = time.perf_counter()
        meter = _Meter(
            t_start=t_start,
            seconds_before=self.state.train_seconds,
            t_log=t_start,
            tokens_at_log=self.state.tokens,
            loss_sum=torch.zeros((), device=self.device),
        )
        with stop_requests() as requests, bar, contextlib.ExitStack() as prefetching:
            stop = False
            while not stop:
                for batch in meter.getting.over(self._epoch_batches(train_data, prefetching)):
                    if not self._micro_step(batch, meter):
                        continue  # mid-accumulation: a step is never cut short
                    signalled, ends = self._end_step(meter, bar, requests)
                    self._log_evaluate_save(meter, bar, signalled, ends, valid_data, task_data)
                    stop = signalled or ends
                    if stop:
                        break
                else:  # the epoch read to its end
                    self.state.epoch += 1
                    self.state.batch = 0
        if self.tensorboard is not None:
            self.tensorboard.close()
        checkpoint = self.out_dir / checkpoint_name(self.state.step)
        if "signal" in requests:
            # Saved: tell the caller, so that a command running several stages stops here
            # instead of going on to the next one.
            raise TrainingInterrupted(checkpoint, requests["signal"])
        return checkpoint

    def _epoch_batches(
        self, data: TrainData, prefetching: contextlib.ExitStack
    ) -> Iterable[dict[str, torch.Tensor]]:
        """The current epoch's batches from where the run stands, built ahead on a GPU."""
        state = self.state
        n = data.num_batches(state.epoch, rank=self.rank, world_size=self.world_size)
        self.control.check_equal(n, f"the number of batches of epoch {state.epoch}")
        if n == 0:
            raise ValueError(f"the training data has no batches for epoch {state.epoch}")
        # Resuming starts after the batches already trained on.
        batches = data.batches(
            state.epoch, rank=self.rank, world_size=self.world_size, start=state.batch
        )
        # `prefetch.GPU_WORKERS` read here, not imported: a benchmark sets it.
        if self.device.type == "cuda" and prefetch.GPU_WORKERS > 0:
            # Closed on leaving the loop, also when it stops mid-epoch.
            batches = prefetching.enter_context(
                contextlib.closing(
                    prefetch.built_ahead(data, state.epoch, self.rank, self.world_size, state.batch)
                )
            )
        return batches

    def _micro_step(self, batch: dict[str, torch.Tensor], meter: _Meter) -> bool:
        """Forward and backward one micro-batch, and at the end of an accumulation update
        the weights; whether it did (a step is done)."""
        accelerator = self.accelerator
        self.state.batch += 1
        meter.step_tokens += _real_tokens(batch)
        with accelerator.accumulate(self.model):
            inputs = {k: batch[k].to(self.device, non_blocking=True) for k in MODEL_INPUTS}
            loss = self.model(**inputs, use_cache=False).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                clip = self.settings.grad_clip or math.inf
                meter.grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), clip)
                meter.lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        meter.loss_sum += loss.detach()
        meter.micro_batches += 1
        return accelerator.sync_gradients

    def _end_step(self, meter: _Meter, bar: tqdm, requests: dict[str, str]) -> tuple[bool, bool]:
        """Count the step done, agreed among processes; whether any process was signalled
        to stop, and whether the run ends here (a limit reached)."""
        settings, state = self.settings, self.state
        if not self.accelerator.optimizer_step_was_skipped:  # fp16 overflow
            self.scheduler.step()
        state.step += 1
        elapsed = time.perf_counter() - meter.t_start
        out_of_time = settings.max_time is not None and elapsed >= settings.max_time
        tokens, signalled, late = self.control.exchange(
            meter.step_tokens, "signal" in requests, out_of_time
        )
        state.tokens += tokens
        state.train_seconds = meter.seconds_before + elapsed
        meter.step_tokens = 0
        ends = late or self._limit_reached(elapsed)
        self._advance(bar, tokens, elapsed)
        return signalled, ends

    def _log_evaluate_save(
        self,
        meter: _Meter,
        bar: tqdm,
        signalled: bool,
        ends: bool,
        valid_data: TrainData | None,
        task_data: TrainData | None,
    ) -> None:
        """After a step: log, evaluate and save where due (all three at the last step)."""
        settings, step = self.settings, self.state.step
        stop = signalled or ends
        row = self._training_figures(meter, bar) if _due(step, settings.log_every, stop) else {}
        t_pause = time.perf_counter()
        best = False
        # A stop signal saves at once, unevaluated: a scheduler's grace period is seconds,
        # an evaluation (select_on on a CPU) minutes.
        if not signalled and _due(step, settings.eval_every, ends):
            best = self._validate(row, valid_data, task_data)
        if row:
            self._log(row)
        if best or _due(step, settings.save_every, stop):
            self.save(best)
        meter.paused += time.perf_counter() - t_pause

    def _training_figures(self, meter: _Meter, bar: tqdm) -> dict[str, Any]:
        """The log row's figures of the steps since the last row, whose sums start anew."""
        now = time.perf_counter()
        loss_value = self.accelerator.reduce(meter.loss_sum, "mean").item() / meter.micro_batches
        interval = now - meter.t_log - meter.paused
        grad_norm = meter.grad_norm
        row = {
            "loss": loss_value,
            "lr": meter.lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": (self.state.tokens - meter.tokens_at_log) / interval,
            "input_share": round(meter.getting.seconds / interval, 4),
        }
        meter.loss_sum.zero_()
        meter.micro_batches = 0
        meter.getting.seconds = 0.0
        meter.t_log, meter.tokens_at_log, meter.paused = now, self.state.tokens, 0.0
        bar.set_postfix(
            loss=f"{loss_value:.4f}", lr=f"{meter.lr:.2e}", tok_s=f"{row['tokens_per_s']:,.0f}"
        )
        return row

    def _validate(
        self, row: dict[str, Any], valid_data: TrainData | None, task_data: TrainData | None
    ) -> bool:
        """Add the validation losses to `row`; whether the task loss is the run's best."""
        if valid_data is not None:
            row["valid_loss"] = self.evaluate(valid_data)
        if task_data is not None:
            row["task_loss"] = self.evaluate(task_data)
            return self._improves(row["task_loss"])
        return False

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
        name = checkpoint_name(state.step)
        tmp = self.out_dir / f".tmp-{name}"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash
            (tmp / STATE_DIR).mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(rng_state(), tmp / STATE_DIR / f"rng-{self.rank}.pt")
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
            write_checksums(tmp)
            publish(tmp, self.out_dir, name, self.settings.keep_last, best)
        accelerator.wait_for_everyone()
        return self.out_dir / name


def _due(step: int, every: int, last: bool) -> bool:
    return last or (every > 0 and step % every == 0)


def _real_tokens(batch: dict[str, torch.Tensor]) -> int:
    # CPU tensors: counting them costs no device synchronisation.
    return int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())


def _tensorboard_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))
