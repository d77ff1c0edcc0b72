"""The corpus on disk: the surviving staged rows written as Parquet shards, one series per
split, swapped in for the previous shards at once (`codemt.corpus` owns the layout)."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codemt.corpus import SCHEMA, SPLITS, shard_dir
from codemt.mine.settings import MineSettings


def write_shards(
    paths: list[Path],
    masks: list[np.ndarray],
    splits: dict[str, str],
    out: Path,
    settings: MineSettings,
) -> Counter:
    """Write the surviving rows, split by repository, as Parquet shards; swap them in atomically."""
    tmp_dir = out / ".work" / "shards.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}
    rows_in_shard: Counter = Counter()
    shard_index: Counter = Counter()
    stats: Counter = Counter()
    repos_per_split: dict[str, set[str]] = {s: set() for s in SPLITS}

    def writer_for(split: str) -> pq.ParquetWriter:
        if split in writers and rows_in_shard[split] >= settings.shard_rows:
            writers.pop(split).close()
            shard_index[split] += 1
            rows_in_shard[split] = 0
        if split not in writers:
            name = tmp_dir / f"{split}-{shard_index[split]:05d}.parquet"
            writers[split] = pq.ParquetWriter(name, SCHEMA, compression="zstd")
        return writers[split]

    try:
        for path, mask in zip(paths, masks, strict=True):
            table = pq.read_table(path).filter(pa.array(mask)).select(SCHEMA.names)
            repos = table.column("repo").to_pylist()
            column = pa.array([splits[r] for r in repos], pa.string())
            table = table.set_column(table.schema.get_field_index("split"), "split", column)
            for split in SPLITS:
                part = table.filter(pc.equal(table.column("split"), split))
                if part.num_rows == 0:
                    continue
                repos_per_split[split].update(part.column("repo").to_pylist())
                offset = 0
                while offset < part.num_rows:
                    writer = writer_for(split)  # opens the next shard when this one is full
                    piece = part.slice(offset, settings.shard_rows - rows_in_shard[split])
                    writer.write_table(piece)
                    rows_in_shard[split] += piece.num_rows
                    offset += piece.num_rows
                stats[f"{split}:methods"] += part.num_rows
                stats[f"{split}:with_docstring"] += sum(
                    1 for d in part.column("docstring").to_pylist() if d
                )
                stats[f"{split}:docstring_task"] += sum(part.column("docstring_task").to_pylist())
        for split in list(writers):
            writers.pop(split).close()  # a close writes the footer: it may fail too
    except BaseException:
        # A full disk, say: the previous shards stay as they are, and the new ones written
        # so far go, to give the space back.
        for writer in writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    for split in SPLITS:
        stats[f"{split}:repos"] = len(repos_per_split[split])
    final = shard_dir(out)
    old = out / ".work" / "shards.old"
    if final.exists():
        final.replace(old)
    tmp_dir.replace(final)
    if old.exists():
        shutil.rmtree(old)
    return stats
