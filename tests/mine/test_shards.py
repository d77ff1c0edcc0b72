"""Writing the corpus's shards as independent tasks (`codemt.mine.shards`): each split's kept
rows in the order of the staged files, cut at `shard_rows`, whatever runs the tasks and
in whatever order; a task run again, or one that fails, leaves no partial file."""

from __future__ import annotations

import errno
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codemt.corpus import SCHEMA, SPLITS, shard_dir
from codemt.mine import shards
from codemt.mine.selection import assign_splits, in_threads, run_here
from codemt.mine.settings import MineSettings
from codemt.mine.staging import STAGED_SCHEMA


def staged_file(path: Path, repos: list[str], rows: int, seed: int, row_group: int) -> None:
    """`rows` staged methods of `repos`, sorted by repository as staging sorts them,
    written in row groups of `row_group` rows; some without a docstring."""
    rng = random.Random(seed)
    records = []
    for i in range(rows):
        record = {name: None for name in STAGED_SCHEMA.names}
        documented = rng.random() < 0.6
        record.update(
            repo=rng.choice(repos),
            path=f"m{i % 7}.py",
            name=f"f{seed}_{i}",
            lineno=i,
            signature=f"def f{seed}_{i}(x):",
            docstring=f"Do {i}." if documented else "",
            body="return x",
            docstring_task=documented and rng.random() < 0.8,
            split="",
        )
        records.append(record)
    records.sort(key=lambda r: (r["repo"], r["lineno"]))
    table = pa.Table.from_pylist(records, schema=STAGED_SCHEMA)
    pq.write_table(table, path, row_group_size=row_group)


@pytest.fixture
def staged(tmp_path: Path) -> tuple[list[Path], list[np.ndarray], dict[str, str]]:
    """Five staged files (one empty, one with many repositories and small row groups),
    random masks, and the splits of the repositories with kept rows."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "staged"
    folder.mkdir()
    shapes = [(["a/one"], 40, 64), ([f"b/r{i}" for i in range(30)], 400, 17), ([], 0, 8),
              (["c/x", "c/y"], 90, 1000), ([f"d/s{i}" for i in range(5)], 230, 50)]  # fmt: skip
    paths, masks = [], []
    for seed, (repos, rows, row_group) in enumerate(shapes):
        path = folder / f"{seed}.parquet"
        staged_file(path, repos, rows, seed, row_group)
        paths.append(path)
        masks.append(rng.random(rows) < 0.8)
    kept = Counter()
    for path, mask in zip(paths, masks, strict=True):
        repos = pq.read_table(path, columns=["repo"]).column("repo").to_pylist()
        kept.update(repo for repo, keep in zip(repos, mask, strict=True) if keep)
    return paths, masks, assign_splits(kept, (0.6, 0.2, 0.2), "repos")


def expected_rows(paths, masks, splits) -> dict[str, list[dict]]:
    """Each split's kept rows, the files in order and their rows in order."""
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for path, mask in zip(paths, masks, strict=True):
        table = pq.read_table(path).select(SCHEMA.names).filter(pa.array(mask))
        for row in table.to_pylist():
            row["split"] = splits[row["repo"]]
            rows[row["split"]].append(row)
    return rows


def written(out: Path) -> dict[str, tuple[list[int], list[list[int]], pa.Table]]:
    """Each shard's rows, its row groups' sizes and its table."""
    result = {}
    for path in sorted(shard_dir(out).iterdir()):
        file = pq.ParquetFile(path)
        groups = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        result[path.name] = (file.metadata.num_rows, groups, file.read())
    return result


def reversed_order(fn, tasks):
    return list(reversed([fn(task) for task in reversed(tasks)]))


@pytest.mark.parametrize("shard_rows", [1, 13, 100, 10_000])
def test_shards_hold_each_splits_kept_rows_in_order_cut_at_shard_rows(tmp_path, staged, shard_rows):
    paths, masks, splits = staged
    out = tmp_path / "out"
    stats = shards.write_shards(paths, masks, splits, out, MineSettings(shard_rows=shard_rows))

    expected = expected_rows(paths, masks, splits)
    shard_files = written(out)
    for split in SPLITS:
        names = sorted(n for n in shard_files if n.startswith(f"{split}-"))
        assert names == [f"{split}-{i:05d}.parquet" for i in range(len(names))]
        sizes = [shard_files[n][0] for n in names]
        assert all(size == shard_rows for size in sizes[:-1]) and 0 < sizes[-1] <= shard_rows
        rows = [row for n in names for row in shard_files[n][2].to_pylist()]
        assert rows == expected[split]
        assert stats[f"{split}:methods"] == len(rows)
        assert stats[f"{split}:repos"] == len({row["repo"] for row in rows})
        assert stats[f"{split}:with_docstring"] == sum(1 for row in rows if row["docstring"])
        assert stats[f"{split}:docstring_task"] == sum(row["docstring_task"] for row in rows)
        assert all(shard_files[n][2].schema == SCHEMA for n in names)
    assert not list((out / ".work").glob("shards.tmp*"))


def test_any_runner_and_any_order_write_the_same_shards(tmp_path, staged):
    paths, masks, splits = staged
    settings = MineSettings(shard_rows=29)
    results = []
    for name, run in [("here", run_here), ("threads", in_threads(3)), ("rev", reversed_order)]:
        stats = shards.write_shards(paths, masks, splits, tmp_path / name, settings, run=run)
        results.append((stats, written(tmp_path / name)))
    assert results[1] == results[0] and results[2] == results[0]
    # A piece a write: each row group is one file's rows of one split within one shard.
    plan, _ = shards.plan_shards(paths, masks, splits, tmp_path, 29)
    groups = {shard.path.name: [len(p.rows) for p in shard.pieces] for shard in plan}
    assert {name: shard[1] for name, shard in results[0][1].items()} == groups


def test_a_piece_is_read_from_the_row_groups_that_hold_it(tmp_path, staged, monkeypatch):
    paths, masks, splits = staged
    read = []
    original = pq.ParquetFile.read_row_groups

    def spy(file, groups, *args, **kwargs):
        read.append(list(groups))
        return original(file, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    plan, _ = shards.plan_shards(paths, masks, splits, tmp_path, 10)
    pieces = [p for shard in plan for p in shard.pieces if p.path == paths[1]]  # groups of 17
    assert len(pieces) > 10
    for piece in pieces:
        read.clear()
        table = shards._read_rows(piece)
        every = pq.read_table(piece.path).select(SCHEMA.names).take(pa.array(piece.rows))
        assert table == every
        assert read == [sorted(set((piece.rows // 17).tolist()))]  # those groups, no other


def test_a_shard_task_run_again_writes_the_same_shard_and_no_other_file(tmp_path, staged):
    paths, masks, splits = staged
    plan, _ = shards.plan_shards(paths, masks, splits, tmp_path, 50)
    first = shards.write_shard(plan[0])
    content = pq.read_table(plan[0].path)
    assert shards.write_shard(plan[0]) == first
    assert pq.read_table(plan[0].path) == content
    assert sorted(tmp_path.iterdir()) == sorted([plan[0].path, tmp_path / "staged"])


@pytest.mark.parametrize("threads", [1, 3])
def test_a_failing_shard_keeps_the_previous_corpus_and_leaves_nothing(
    tmp_path, staged, monkeypatch, threads
):
    paths, masks, splits = staged
    out = tmp_path / "out"
    settings = MineSettings(shard_rows=20)
    shards.write_shards(paths, masks, splits, out, settings)
    before = written(out)
    original = shards.write_shard
    started = []

    def full_disk_on_the_fifth(shard):
        started.append(shard)
        if len(started) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(shard)

    monkeypatch.setattr(shards, "write_shard", full_disk_on_the_fifth)
    fewer = [mask & (np.arange(len(mask)) % 2 == 0) for mask in masks]
    with pytest.raises(OSError, match="No space left"):
        shards.write_shards(paths, fewer, splits, out, settings, run=in_threads(threads))
    assert written(out) == before
    assert not list((out / ".work").glob("shards.tmp*"))
    assert len(started) < len(shards.plan_shards(paths, fewer, splits, tmp_path, 20)[0])


def test_a_failed_write_removes_its_partial_file(tmp_path, staged, monkeypatch):
    paths, masks, splits = staged
    plan, _ = shards.plan_shards(paths, masks, splits, tmp_path, 50)
    calls = []
    original = pq.ParquetWriter.write_table

    def full_after_one(writer, table, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(writer, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_after_one)
    shard = next(s for s in plan if len(s.pieces) > 1)
    with pytest.raises(OSError):
        shards.write_shard(shard)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "staged"]


def test_a_half_written_file_of_a_killed_task_is_not_left_among_the_shards(tmp_path, staged):
    paths, masks, splits = staged

    def killed_once(fn, tasks):
        # What a task killed mid-write leaves: its own temporary name, half a file.
        tasks[0].path.with_suffix(".tmp-4242-deadbeef").write_bytes(b"PAR1 half a shard")
        return run_here(fn, tasks)

    out = tmp_path / "out"
    shards.write_shards(paths, masks, splits, out, MineSettings(shard_rows=50), run=killed_once)
    assert all(path.suffix == ".parquet" for path in shard_dir(out).iterdir())


def test_kept_methods_of_a_repository_without_a_split_are_an_error_not_dropped(tmp_path, staged):
    paths, masks, splits = staged
    lacking = {repo: split for repo, split in splits.items() if repo != "c/x"}
    with pytest.raises(ValueError, match=r"3\.parquet: kept methods of 'c/x'"):
        shards.plan_shards(paths, masks, lacking, tmp_path, 50)


@pytest.mark.parametrize(("workers", "threads"), [(1, 1), (2, 2), (64, shards.MAX_THREADS)])
def test_the_local_engine_writes_at_most_a_few_shards_at_once(monkeypatch, workers, threads):
    from codemt.mine import pipeline

    asked = []
    monkeypatch.setattr(pipeline, "in_threads", lambda n: asked.append(n) or run_here)
    with pipeline._engine(MineSettings(workers=workers)):
        pass
    assert asked == [threads]
