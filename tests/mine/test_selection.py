"""Global de-duplication over numbered keys decides exactly what the greedy choice over sets
of keys (`Deduplicator`) decides: the same rows kept, in the same preference order."""

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codemt.mine.dedup import Deduplicator, DedupSettings
from codemt.mine.selection import _body_keys, deduplicate
from codemt.mine.settings import MineSettings
from codemt.mine.staging import STAGED_SCHEMA

BANDS = 9  # the default settings' band count


def reference(paths, settings, excluded=()):
    """The greedy choice as `Deduplicator` makes it, every key in Python sets."""
    blocked = Deduplicator(settings.dedup)
    blocked_bodies = set()
    for path in excluded:
        table = pq.read_table(path, columns=["exact_key", "band_keys"])
        for key, bands in zip(
            table.column("exact_key").to_pylist(),
            table.column("band_keys").to_pylist(),
            strict=True,
        ):
            blocked.remember(key, bands)
        blocked_bodies.update(int(k) for k in _body_keys(path) if k)
    tables = [pq.read_table(p) for p in paths]
    bodies = [_body_keys(p) for p in paths]
    order = sorted(
        (not doc, repo, path, line, f, row)
        for f, table in enumerate(tables)
        for row, (doc, repo, path, line) in enumerate(
            zip(
                table.column("docstring").to_pylist(),
                table.column("repo").to_pylist(),
                table.column("path").to_pylist(),
                table.column("lineno").to_pylist(),
                strict=True,
            )
        )
    )
    dedup = Deduplicator(settings.dedup)
    masks = [np.ones(t.num_rows, dtype=bool) for t in tables]
    removed, kept = Counter(), Counter()
    for _, repo, _, _, f, row in order:
        key = tables[f].column("exact_key")[row].as_py()
        bands = tables[f].column("band_keys")[row].as_py()
        verdict = None
        if excluded and (blocked.match(key, bands) or int(bodies[f][row]) in blocked_bodies):
            verdict = "excluded"
        verdict = verdict or dedup.offer(key, bands)
        if verdict:
            masks[f][row] = False
            removed[verdict] += 1
        else:
            kept[repo] += 1
    return masks, removed, kept


def staged_file(path: Path, rows: int, rng: random.Random, *, pool: int = 400) -> Path:
    """Staged methods with keys drawn from small pools, so that exact and near copies are
    many: across files, repositories, documented or not, some too short for band keys."""
    records = []
    for _ in range(rows):
        record = {name: None for name in STAGED_SCHEMA.names}
        record.update(
            repo=f"repo-{rng.randrange(12)}/é{rng.randrange(3)}",
            path=rng.choice(["a.py", "b/c.py", "Z.py", "b/a.py", "ä.py"]),
            name="f",
            lineno=rng.randrange(1, 60),
            signature="def f():",
            docstring=rng.choice(["", "", "Do it.", None]),
            body=rng.choice(["    pass", " ".join(["    return"] + ["x"] * rng.randrange(12))]),
            exact_key=rng.randrange(pool) * 7919,
            band_keys=None
            if rng.random() < 0.15
            else [band * 10**6 + rng.randrange(pool * 3) for band in range(BANDS)],
        )
        records.append(record)
    pq.write_table(pa.Table.from_pylist(records, schema=STAGED_SCHEMA), path)
    return path


@pytest.fixture(scope="module", params=[400, 20000], ids=["dense", "sparse"])
def staged(tmp_path_factory, request):
    """Staged files whose keys come from a small pool (all methods end up linked through
    shared keys) or a large one (many independent groups of copies)."""
    folder = tmp_path_factory.mktemp("staged")
    rng = random.Random(3)
    pool = request.param
    files = [
        staged_file(folder / f"part-{i}.parquet", n, rng, pool=pool)
        for i, n in enumerate([1500, 1, 900])
    ]
    excluded = staged_file(folder / "excluded.parquet", 60, rng, pool=pool)
    return files, excluded, pool


@pytest.mark.parametrize(
    "dedup",
    [DedupSettings(), DedupSettings(exact=False), DedupSettings(near=False)],
    ids=["exact-and-near", "near-only", "exact-only"],
)
@pytest.mark.parametrize("with_excluded", [False, True])
def test_the_same_rows_are_kept_as_by_the_greedy_choice_over_sets(staged, dedup, with_excluded):
    files, excluded_file, pool = staged
    settings = MineSettings(dedup=dedup)
    excluded = [excluded_file] if with_excluded else []
    want_masks, want_removed, want_kept = reference(files, settings, excluded)
    # In one pass, and in parts of whole groups of rows that share keys, as a cluster runs
    # them (the parts here run in reverse order: no part depends on another).
    for tasks in (1, 3, 50):
        ran = []

        def backwards(fn, parts, ran=ran):
            ran.append(len(parts))
            return [fn(part) for part in parts[::-1]][::-1]

        masks, removed, kept = deduplicate(files, settings, excluded, run=backwards, tasks=tasks)
        assert [m.tolist() for m in masks] == [m.tolist() for m in want_masks]
        assert removed == want_removed  # read by name
        assert list(kept.items()) == list(want_kept.items())  # the same order too
        assert ran[0] <= tasks and (tasks == 1 or pool < 20000 or ran[0] > 1)
    assert removed["near_duplicate"] or not dedup.near  # the case is exercised
    assert removed["exact_duplicate"] or not dedup.exact


def test_no_staged_rows_keep_nothing(tmp_path):
    empty = staged_file(tmp_path / "empty.parquet", 0, random.Random(0))
    masks, removed, kept = deduplicate([empty], MineSettings())
    assert [m.tolist() for m in masks] == [[]] and not removed and not kept
