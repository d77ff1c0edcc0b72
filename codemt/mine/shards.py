"""The corpus on disk: the surviving staged rows written as Parquet shards, one series per
split, swapped in for the previous shards at once (`codemt.corpus` owns the layout).

Writing is planned where `codemt mine` runs and done in independent tasks, a task a
shard, by the engine's runner (threads here, a cluster's workers with `--engine ray`):

- The plan reads only the `repo` column of each staged file, and cuts each split's rows,
  in the order of the files and of their rows, into shards of `shard_rows` rows. A
  shard is a list of pieces, each a staged file and the numbers of its rows that go
  there (4 bytes a kept method, the plan's whole cost).
- A task writes its shard from the row groups of the staged files that hold its rows,
  one `write_table` a piece, under a name of its own, renamed into place when complete:
  a task run again (its worker died) writes the same shard and never a half of one.

The shards are the same, row for row and row group for row group, whatever runs the
tasks and in whatever order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codemt.corpus import SCHEMA, SPLITS, shard_dir
from codemt.mine.selection import Runner, run_here
from codemt.mine.settings import MineSettings

_SPLIT_FIELD = SCHEMA.get_field_index("split")
# The most shards written at once on one machine: each holds its rows decoded (about
# `shard_rows` times 2 KB of real methods), so that the finish's memory stays bounded
# on a machine of many cores.
MAX_THREADS = 4


@dataclass(frozen=True)
class Piece:
    """Rows of one staged file that go to a shard: their numbers in the file, ascending."""

    path: Path
    rows: np.ndarray


@dataclass(frozen=True)
class Shard:
    """One shard to write: its split, where it goes and its pieces, in order."""

    split: str
    path: Path
    pieces: tuple[Piece, ...]


def write_shards(
    paths: list[Path],
    masks: list[np.ndarray],
    splits: dict[str, str],
    out: Path,
    settings: MineSettings,
    run: Runner = run_here,
) -> Counter:
    """Write the surviving rows, split by repository, as Parquet shards, the shards by
    `run`; swap them in atomically. Returns per split its methods, repositories, methods
    with a docstring and docstring-task methods (`"<split>:<what>"`)."""
    # A folder of this run's own: a task of a stopped run that still ends on a cluster
    # finishes into that run's folder, gone by then, never into this one.
    for stale in (out / ".work").glob("shards.tmp*"):
        shutil.rmtree(stale)
    tmp_dir = out / ".work" / f"shards.tmp-{uuid.uuid4().hex[:12]}"
    tmp_dir.mkdir(parents=True)
    try:
        shards, stats = plan_shards(paths, masks, splits, tmp_dir, settings.shard_rows)
        for shard, written in zip(shards, run(write_shard, shards), strict=True):
            stats.update({f"{shard.split}:{what}": n for what, n in written.items()})
        # A task killed while writing (and run again) left its half-written file behind.
        planned = {shard.path for shard in shards}
        for leftover in set(tmp_dir.iterdir()) - planned:
            leftover.unlink()
    except BaseException:
        # A full disk, say: the previous shards stay as they are, and the new ones written
        # so far go, to give the space back.
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    final = shard_dir(out)
    old = out / ".work" / "shards.old"
    if final.exists():
        final.replace(old)
    tmp_dir.replace(final)
    if old.exists():
        shutil.rmtree(old)
    return stats


def plan_shards(
    paths: Sequence[Path],
    masks: Sequence[np.ndarray],
    splits: dict[str, str],
    folder: Path,
    shard_rows: int,
) -> tuple[list[Shard], Counter]:
    """The shards of each split, `shard_rows` rows each but the last, named
    `<split>-<number>.parquet` in `folder`; and per split its methods and repositories."""
    shards: list[Shard] = []
    filling: dict[str, list[Piece]] = {split: [] for split in SPLITS}
    rows_in: Counter = Counter()
    closed: Counter = Counter()
    repos: dict[str, set[str]] = {split: set() for split in SPLITS}
    stats: Counter = Counter()

    def close(split: str) -> None:
        name = folder / f"{split}-{closed[split]:05d}.parquet"
        shards.append(Shard(split, name, tuple(filling[split])))
        filling[split], rows_in[split] = [], 0
        closed[split] += 1

    for path, mask in zip(paths, masks, strict=True):
        if not mask.any():
            continue
        names, codes = _repo_codes(path)
        # Each repository's split as its index in SPLITS; -1 for one with no kept method.
        split_codes = np.array(
            [SPLITS.index(splits[r]) if r in splits else -1 for r in names], dtype=np.int8
        )
        row_splits = np.where(mask, split_codes[codes], -1)
        if (row_splits[mask] < 0).any():
            missing = names[codes[mask & (row_splits < 0)][0]]
            raise ValueError(f"{path}: kept methods of {missing!r}, a repository with no split")
        for index, split in enumerate(SPLITS):
            rows = np.flatnonzero(row_splits == index).astype(_row_type(len(mask)))
            if not len(rows):
                continue
            stats[f"{split}:methods"] += len(rows)
            repos[split].update(names[i] for i in np.unique(codes[rows]).tolist())
            while len(rows):
                room = shard_rows - rows_in[split]
                filling[split].append(Piece(path, rows[:room]))
                rows_in[split] += len(rows[:room])
                rows = rows[room:]
                if rows_in[split] == shard_rows:
                    close(split)
    for split in SPLITS:
        if filling[split]:
            close(split)
        stats[f"{split}:repos"] = len(repos[split])
    return shards, stats


def _row_type(rows: int) -> type:
    """The smallest integer type for row numbers of a file of `rows` rows."""
    return np.int32 if rows <= np.iinfo(np.int32).max else np.int64


def _repo_codes(path: Path) -> tuple[list[str], np.ndarray]:
    """The distinct repositories of a staged file, and each row's index among them."""
    table = pq.read_table(path, columns=["repo"], read_dictionary=["repo"])
    encoded = table.unify_dictionaries().column("repo").combine_chunks()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def write_shard(shard: Shard) -> Counter:
    """Write one shard (a task of the engine's); returns its methods with a docstring and
    its docstring-task methods."""
    stats: Counter = Counter()
    # A name of this task's own: a task run again while the first run of it still writes
    # (a node thought dead) must not write into the other's file.
    own = shard.path.with_suffix(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    writer = pq.ParquetWriter(own, SCHEMA, compression="zstd")
    try:
        for piece in shard.pieces:
            table = _read_rows(piece)
            column = pa.repeat(pa.scalar(shard.split, pa.string()), table.num_rows)
            writer.write_table(table.set_column(_SPLIT_FIELD, "split", column))
            stats["with_docstring"] += _count(pc.not_equal(table.column("docstring"), ""))
            stats["docstring_task"] += _count(table.column("docstring_task"))
        writer.close()  # a close writes the footer: it may fail too
        own.replace(shard.path)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        own.unlink(missing_ok=True)
        raise
    return stats


def _read_rows(piece: Piece) -> pa.Table:
    """A piece's rows (the corpus's columns), read from the row groups that hold them."""
    with pq.ParquetFile(piece.path) as file:
        meta = file.metadata
        sizes = np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        starts = np.concatenate([[0], np.cumsum(sizes)])
        group_of = np.searchsorted(starts, piece.rows, side="right") - 1
        groups = np.unique(group_of)
        # Where each group's rows begin once the groups read are laid end to end.
        read_starts = np.zeros(len(sizes), dtype=np.int64)
        read_starts[groups] = np.concatenate([[0], np.cumsum(sizes[groups])[:-1]])
        positions = piece.rows - starts[group_of] + read_starts[group_of]
        table = file.read_row_groups(groups.tolist(), columns=SCHEMA.names)
    # In the corpus's order of columns, whatever the staged file's.
    return table.take(pa.array(positions)).select(SCHEMA.names)


def _count(flags: pa.ChunkedArray) -> int:
    """How many of `flags` are true (a null is not)."""
    return pc.sum(pc.fill_null(flags, False)).as_py() or 0
