"""Checkpoints of a run: writing them atomically, checking them, resuming from them.

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
into a temporary folder and renamed (`publish`), so a crash never leaves half of one, and
lists its files' sizes and SHA-256 last, so that a damaged one is found before resuming
(`checkpoint_damage`). The resume state is that of data parallelism (DDP); sharded
optimisers (FSDP, DeepSpeed) would need accelerate's `save_state`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from codemt.model import BEST_FILE, CODEMT_FILE, LATEST_FILE
from codemt.training.config import TrainState

if TYPE_CHECKING:
    from accelerate import Accelerator

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


def checkpoint_name(step: int) -> str:
    """The folder name of step `step`'s checkpoint in a run folder."""
    return f"step-{step:06d}"


def _checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def resume_point(out_dir: Path, resume: bool) -> Path | None:
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


def rng_state() -> dict[str, Any]:
    """This process's random states (Python, numpy, torch, CUDA), saved per process."""
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


def restore_state(
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


def write_checksums(checkpoint: Path) -> None:
    """List every file of `checkpoint` with its size and SHA-256 (`checkpoint_damage`)."""
    files = {
        path.relative_to(checkpoint).as_posix(): [path.stat().st_size, _sha256(path)]
        for path in sorted(checkpoint.rglob("*"))
        if path.is_file()
    }
    (checkpoint / CHECKSUM_FILE).write_text(json.dumps({"files": files}, indent=1), "utf-8")


def publish(tmp: Path, out_dir: Path, name: str, keep_last: int, best: bool = False) -> None:
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
