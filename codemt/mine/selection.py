"""Phase two's decisions: which staged methods survive global de-duplication and the
exclusions, and which split each repository goes to.

The de-duplication reads every staged file of the run together, so that a method copied
across sources is kept once; the split is by repository, so no project is in two splits.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codemt.mine.dedup import exact_key
from codemt.mine.settings import MineSettings

# Methods decided per step of the greedy pass: their keys are turned into Python lists,
# which are fast to read and, a chunk at a time, small.
_CHUNK = 65536


# Runs `fn` on each task, giving back the results in the order of the tasks: here, one
# after another (`run_here`), on threads (`in_threads`), or on the workers of a cluster
# (`codemt.mine.cluster.runner`).
Runner = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def run_here(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
    return [fn(task) for task in tasks]


def in_threads(threads: int) -> Runner:
    """A runner on `threads` threads, for tasks whose work is Arrow's and Parquet's (which
    let go of the interpreter while they work). When a task fails, the tasks not started
    are dropped and those running are waited for before the error is raised: nothing of
    the run goes on writing after it."""
    if threads <= 1:
        return run_here

    def run(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:  # failed (or interrupted): what has not started does not start
                for future in futures:
                    future.cancel()
            return [future.result() for future in futures]

    return run


def deduplicate(
    paths: list[Path],
    settings: MineSettings,
    excluded: Sequence[Path] = (),
    *,
    run: Runner = run_here,
    tasks: int = 1,
) -> tuple[list[np.ndarray], Counter, Counter]:
    """Decide which staged rows survive global de-duplication.

    Rows that copy a row of the `excluded` files are removed first ("excluded"): exact or
    near duplicates, and methods with the very same body (a copy whose signature gained
    type annotations, say) unless the body is too short to tell.
    Returns a keep-mask per file, the count of removed rows per kind, and the count of
    kept methods per repository.

    The greedy choice is `Deduplicator`'s (methods offered in preference order, the first of
    each cluster kept), made over numbered keys instead of sets of them: every exact key
    and every band key is replaced by its rank among the corpus's distinct values, so that
    what is held is a few numpy arrays of small integers per method (`StagedKeys`), and the
    sets of `Deduplicator` become one byte per distinct key.

    Only methods that share a key with another can be removed, and a method's fate depends
    only on those it is linked to through shared keys: the methods fall into independent
    groups (the connected components of "shares a key with"), a method that shares no key
    is kept at once, and the greedy pass runs over each group in preference order, in
    `tasks` parts of whole groups, by `run` (on a cluster's workers with the Ray engine).
    Any split into parts gives the same decisions as one pass over all methods.
    """
    staged = StagedKeys.read(paths)
    outside = _copies_of_excluded(staged, paths, excluded, settings) if excluded else None
    order = staged.preference_order()
    exact_ids, distinct_exact = _ranks(staged.exact)
    del staged.exact
    band_ids, distinct_bands = _band_ranks(staged.bands, staged.has_bands)
    del staged.bands
    removed: Counter = Counter()
    # Rows copying an excluded file go, and mark nothing: they take part in no group.
    keep = np.ones(len(order), dtype=bool) if outside is None else ~outside
    if outside is not None and outside.any():
        removed["excluded"] = int(outside.sum())
    use_exact, use_near = settings.dedup.exact, settings.dedup.near
    links = []
    if use_exact:
        links.append((exact_ids, distinct_exact, keep))
    if use_near:
        banded = keep & staged.has_bands
        links += [(band_ids[:, b], n, banded) for b, n in enumerate(distinct_bands)]
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    grouped, bounds = _groups(links, rank)
    del rank, links
    parts = [
        GreedyPart(
            rows := grouped[a:b],
            exact_ids[rows] if use_exact else None,
            band_ids[rows] if use_near else None,
            staged.has_bands[rows],
        )
        for a, b in _parts(bounds, tasks)
    ]
    del exact_ids, band_ids, grouped
    for part, (kept_rows, verdicts) in zip(parts, run(greedy_pass, parts), strict=True):
        keep[part.rows] = kept_rows
        removed.update(verdicts)
    # Kept methods per repository, counted in preference order (a repository first met
    # first), as one pass would count them.
    repo_ids = staged.repo_ids[order[keep[order]]]
    ids, first, counts = np.unique(repo_ids, return_index=True, return_counts=True)
    kept: Counter = Counter()
    for j in np.argsort(first, kind="stable").tolist():
        kept[staged.repos[ids[j]]] = int(counts[j])
    return np.split(keep, staged.offsets[1:-1]), removed, kept


@dataclass(frozen=True)
class GreedyPart:
    """Whole groups of rows that share keys, each group's rows in preference order: the
    rows' numbers, their exact keys' and band keys' ranks (None where that kind of
    de-duplication is off) and whether they have band keys."""

    rows: np.ndarray
    exact: np.ndarray | None
    bands: np.ndarray | None
    has_bands: np.ndarray


def greedy_pass(part: GreedyPart) -> tuple[np.ndarray, Counter]:
    """Which rows of `part` are kept, offered in order (of each cluster of copies the
    first stays), and how many of the others are exact or near duplicates."""
    keep = np.zeros(len(part.rows), dtype=bool)
    verdicts: Counter = Counter()
    exact, distinct_exact = _ranks(part.exact) if part.exact is not None else (None, 0)
    seen_exact = bytearray(distinct_exact)
    taken_bands, bands = [], None
    if part.bands is not None and part.bands.shape[1]:
        bands, distinct_bands = _band_ranks(part.bands, part.has_bands)
        taken_bands = [bytearray(n) for n in distinct_bands]
    for start in range(0, len(part.rows), _CHUNK):
        stop = start + _CHUNK
        exacts = exact[start:stop].tolist() if exact is not None else None
        row_bands = bands[start:stop].tolist() if bands is not None else None
        has_bands = part.has_bands[start:stop].tolist()
        for k in range(len(has_bands)):
            near = row_bands is not None and has_bands[k]
            if exacts is not None and seen_exact[exacts[k]]:
                verdict = "exact_duplicate"
            elif near and any(t[key] for t, key in zip(taken_bands, row_bands[k], strict=True)):
                verdict = "near_duplicate"
            else:
                verdict = None
            if exacts is not None:  # a near duplicate's exact copies count as exact
                seen_exact[exacts[k]] = 1
            if verdict:
                verdicts[verdict] += 1
                continue
            keep[start + k] = True
            if near:
                for taken, key in zip(taken_bands, row_bands[k], strict=True):
                    taken[key] = 1
    return keep, verdicts


def _groups(
    links: list[tuple[np.ndarray, int, np.ndarray]], rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows that share a key with another row, by group (connected through shared
    keys), each group's rows in preference order (`rank`); and where each group starts
    (with the end last). `links`: per kind of key, each row's key rank, the number of
    distinct keys and which rows take part."""
    edge_rows, edge_keys, offset = [], [], 0
    for ids, distinct, taking in links:
        # Counted over the rows taking part alone; a row with no key of this kind (-1) never.
        counts = np.bincount(ids[taking], minlength=distinct)
        shared = counts >= 2
        del counts
        rows = np.flatnonzero(taking & shared[ids])
        edge_rows.append(rows)
        edge_keys.append(ids[rows].astype(np.int64) + offset)
        offset += distinct
    if not edge_rows or not sum(len(r) for r in edge_rows):
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, row_node = np.unique(np.concatenate(edge_rows), return_inverse=True)
    keys, key_node = np.unique(np.concatenate(edge_keys), return_inverse=True)
    nodes = len(rows) + len(keys)
    graph = coo_matrix(
        (np.ones(len(row_node), dtype=np.int8), (row_node, len(rows) + key_node)),
        shape=(nodes, nodes),
    ).tocsr()
    labels = connected_components(graph, directed=False)[1][: len(rows)]
    by_group = np.lexsort((rank[rows], labels))
    labels = labels[by_group]
    starts = np.flatnonzero(np.diff(labels)) + 1
    return rows[by_group], np.concatenate([[0], starts, [len(rows)]])


def _parts(bounds: np.ndarray, tasks: int) -> list[tuple[int, int]]:
    """Cut the groups (starting at `bounds`) into at most `tasks` runs of whole groups of
    about as many rows each."""
    total = int(bounds[-1])
    if total == 0:
        return []
    size = -(-total // max(tasks, 1))
    parts, start = [], 0
    for end in bounds[1:].tolist():
        if end - start >= size or end == total:
            parts.append((start, end))
            start = end
    return parts


def _ranks(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value's rank among the distinct values (int32: equal values, equal ranks), and
    how many distinct values there are."""
    if not len(values):
        return np.zeros(0, dtype=np.int32), 0
    distinct, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int32).reshape(-1), len(distinct)


def _band_ranks(bands: np.ndarray, has_bands: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """`_ranks` of each band's keys (int32, -1 for a row without band keys), and the number
    of distinct keys of each band."""
    ids = np.full(bands.shape, -1, dtype=np.int32)
    distinct = []
    for band in range(bands.shape[1]):
        ids[has_bands, band], n = _ranks(bands[has_bands, band])
        distinct.append(n)
    return ids, distinct


class StagedKeys:
    """What de-duplication reads of the staged rows of a run, as arrays (one row a method,
    files end to end): the sort key of the preference order, the exact key, the band keys.

    The arrays are sized from the files' metadata first and filled a file at a time, so a
    run holds each key once (about 100 bytes a method with nine bands).
    """

    COLUMNS = ["repo", "path", "lineno", "docstring", "exact_key", "band_keys"]

    def __init__(self, rows: int) -> None:
        self.offsets = [0]
        self.undocumented = np.zeros(rows, dtype=bool)
        self.lines = np.zeros(rows, dtype=np.int64)
        self.exact = np.zeros(rows, dtype=np.int64)
        self.bands = np.zeros((rows, 0), dtype=np.int64)  # widened at the first band keys
        self.has_bands = np.zeros(rows, dtype=bool)
        self.repo_ids = np.zeros(rows, dtype=np.int32)
        self.path_ids = np.zeros(rows, dtype=np.int32)
        self.repos: list[str] = []  # sorted: a repository's id is its rank

    @classmethod
    def read(cls, paths: Sequence[Path]) -> StagedKeys:
        """The keys of every staged file, read a file at a time; the docstrings are only
        asked whether they are empty."""
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
        keys = cls(rows)
        repos, files = [], []
        for path in paths:
            table = pq.read_table(path, columns=cls.COLUMNS)
            start, end = keys.offsets[-1], keys.offsets[-1] + table.num_rows
            keys.offsets.append(end)
            documented = pc.fill_null(
                pc.greater(pc.binary_length(table.column("docstring")), 0), False
            )
            keys.undocumented[start:end] = ~documented.to_numpy(zero_copy_only=False)
            keys.lines[start:end] = table.column("lineno").to_numpy(zero_copy_only=False)
            keys.exact[start:end] = table.column("exact_key").to_numpy(zero_copy_only=False)
            repos.append(table.column("repo").combine_chunks().dictionary_encode())
            files.append(table.column("path").combine_chunks().dictionary_encode())
            lists = table.column("band_keys").combine_chunks()
            present = lists.is_valid().to_numpy(zero_copy_only=False)
            flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
            keys.has_bands[start:end] = present
            if len(flat):
                if not keys.bands.shape[1]:
                    keys.bands = np.zeros((rows, len(flat) // int(present.sum())), np.int64)
                bands = keys.bands.shape[1]
                if len(flat) != int(present.sum()) * bands:
                    raise ValueError(f"{path}: staged band keys are not {bands} a method")
                keys.bands[start:end][present] = flat.reshape(-1, bands)
        keys.repos, keys.repo_ids[:] = _global_ids(repos, rows)
        keys.path_ids[:] = _global_ids(files, rows)[1]
        return keys

    def preference_order(self) -> np.ndarray:
        """The rows in the order they are offered: documented methods first (of two copies,
        keep the one that teaches docstrings), then by repository, path, line and place."""
        place = np.arange(len(self.lines))
        order = np.lexsort((place, self.lines, self.path_ids, self.repo_ids, self.undocumented))
        del self.undocumented, self.lines, self.path_ids
        return order


def _global_ids(columns: list[pa.DictionaryArray], rows: int) -> tuple[list[str], np.ndarray]:
    """The sorted distinct strings of dictionary-encoded columns, and each of their `rows`
    rows' rank among them (UTF-8 byte order is code point order: Python's `<`)."""
    if not columns:
        return [], np.zeros(rows, dtype=np.int32)
    # One lookup for every file's dictionary together: a lookup builds its hash table anew.
    dictionaries = pa.chunked_array([c.dictionary for c in columns]).combine_chunks()
    distinct = pc.unique(dictionaries)
    distinct = distinct.take(pc.array_sort_indices(distinct))
    ranks = pc.index_in(dictionaries, value_set=distinct).to_numpy(zero_copy_only=False)
    ids, start = [], 0
    for column in columns:
        end = start + len(column.dictionary)
        ids.append(ranks[start:end].astype(np.int32)[column.indices.to_numpy(zero_copy_only=False)])
        start = end
    return distinct.to_pylist(), np.concatenate(ids)


def _copies_of_excluded(
    staged: StagedKeys, paths: Sequence[Path], excluded: Sequence[Path], settings: MineSettings
) -> np.ndarray:
    """Which staged rows copy a row of the `excluded` files: the same exact key or a shared
    band key (by band), or the very same body (of ten words or more)."""
    blocked_exact, blocked_bands, blocked_bodies = [], [], []
    for path in excluded:
        table = pq.read_table(path, columns=["exact_key", "band_keys"])
        blocked_exact.append(table.column("exact_key").to_numpy(zero_copy_only=False))
        for row_bands in table.column("band_keys").to_pylist():
            if row_bands is not None:
                blocked_bands.append(row_bands)
        blocked_bodies.append(_body_keys(path))
    hit = np.zeros(len(staged.exact), dtype=bool)
    if settings.dedup.exact and blocked_exact:
        hit |= np.isin(staged.exact, np.concatenate(blocked_exact).astype(np.int64))
    if settings.dedup.near and blocked_bands and staged.bands.shape[1]:
        table = np.asarray(blocked_bands, dtype=np.int64)
        for band in range(staged.bands.shape[1]):
            hit |= staged.has_bands & np.isin(staged.bands[:, band], table[:, band])
    bodies = np.concatenate(blocked_bodies) if blocked_bodies else np.zeros(0, np.uint64)
    bodies = bodies[bodies != 0]
    if len(bodies):
        own = np.concatenate([_body_keys(p) for p in paths]) if paths else np.zeros(0, np.uint64)
        hit |= (own != 0) & np.isin(own, bodies)
    return hit


def _body_keys(path: Path) -> np.ndarray:
    """A hash of each staged method's body (uint64); 0 for a body of fewer than 10 words,
    which many unrelated methods may share."""
    keys = [np.zeros(0, dtype=np.uint64)]
    for batch in pq.ParquetFile(path).iter_batches(columns=["body"], batch_size=65536):
        bodies = batch.column(0).to_pylist()
        hashed = (exact_key("", b) if b and len(b.split()) >= 10 else 0 for b in bodies)
        keys.append(np.fromiter(hashed, dtype=np.uint64, count=len(bodies)))
    return np.concatenate(keys)


def _hash_position(repo: str) -> float:
    return int.from_bytes(hashlib.sha256(repo.encode()).digest()[:8], "big") / 2**64


def _split_at(position: float, ratios: tuple[float, float, float]) -> str:
    if position < ratios[0]:
        return "train"
    if position < ratios[0] + ratios[1]:
        return "valid"
    return "test"


def split_of(repo: str, ratios: tuple[float, float, float]) -> str:
    """The split of a repository by a deterministic hash of its name alone (`split_by="repos"`)."""
    return _split_at(_hash_position(repo), ratios)


def assign_splits(
    methods_per_repo: dict[str, int], ratios: tuple[float, float, float], by: str
) -> dict[str, str]:
    """The split of every repository; a repository is always whole in one split.

    `by="repos"`: each repository by the hash of its name, so ratios hold for repository
    counts and a repository's split never depends on the others. `by="methods"`: the
    repositories, in the order of their name hashes, are laid end to end, each as long
    as its share of methods, and each goes to the split its midpoint falls in, so the
    ratios hold for method counts even when a few repositories are huge (a local corpus
    of installed packages is such a case). A repository larger than half of the smallest
    held-out share trains, largest first, as long as the others can still fill the
    held-out shares: a held-out split that one project fills measures that project alone
    (torch, a tenth of a corpus of installed packages, was once the whole valid split).
    """
    if by == "repos":
        return {repo: split_of(repo, ratios) for repo in methods_per_repo}
    total = sum(methods_per_repo.values())
    held_out = (ratios[1] + ratios[2]) * total
    limit = min(r for r in ratios[1:] if r > 0) / 2 * total if held_out > 0 else math.inf
    splits, rest = {}, total
    for repo in sorted(methods_per_repo, key=lambda r: (-methods_per_repo[r], r)):
        n = methods_per_repo[repo]
        if n <= limit:
            break
        if rest - n >= held_out:  # else the others could not fill the held-out shares
            splits[repo] = "train"
            rest -= n
    if rest <= 0:  # nothing left with methods in it
        return {repo: "train" for repo in methods_per_repo}
    # The held-out shares of the whole corpus, as shares of what is left to lay out.
    valid, test = (min(r * total / rest, 1.0) for r in ratios[1:])
    rest_ratios = (max(1.0 - valid - test, 0.0), valid, test)
    start = 0.0
    for repo in sorted(methods_per_repo, key=lambda r: (_hash_position(r), r)):
        if repo in splits:
            continue
        share = methods_per_repo[repo] / rest
        splits[repo] = _split_at(start + share / 2, rest_ratios)
        start += share
    return splits
