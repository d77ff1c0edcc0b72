"""Phase two's decisions: which staged methods survive global de-duplication and the
exclusions, and which split each repository goes to.

The de-duplication reads every staged file of the run together, so that a method copied
across sources is kept once; the split is by repository, so no project is in two splits.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from codemt.mine.dedup import Deduplicator, exact_key
from codemt.mine.settings import MineSettings


def deduplicate(
    paths: list[Path], settings: MineSettings, excluded: Sequence[Path] = ()
) -> tuple[list[np.ndarray], Counter, Counter]:
    """Decide which staged rows survive global de-duplication.

    Rows that copy a row of the `excluded` files are removed first ("excluded"): exact or
    near duplicates, and methods with the very same body (a copy whose signature gained
    type annotations, say) unless the body is too short to tell.
    Returns a keep-mask per file, the count of removed rows per kind, and the count of
    kept methods per repository.
    """
    columns = ["repo", "path", "lineno", "docstring", "exact_key", "band_keys"]
    blocked = Deduplicator(settings.dedup)
    blocked_bodies: set[int] = set()
    for path in excluded:
        table = pq.read_table(path, columns=["exact_key", "band_keys"])
        exact_keys, band_lists = table.column("exact_key"), table.column("band_keys")
        for key, row_bands in zip(exact_keys.to_numpy(), band_lists.to_pylist(), strict=True):
            blocked.remember(int(key), row_bands)
        blocked_bodies.update(int(k) for k in _body_keys(path) if k)
    tables = [pq.read_table(p, columns=columns) for p in paths]
    bodies = [_body_keys(p) if excluded else None for p in paths]
    order_keys = []
    for file_index, table in enumerate(tables):
        has_doc = [bool(d) for d in table.column("docstring").to_pylist()]
        repos = table.column("repo").to_pylist()
        files = table.column("path").to_pylist()
        lines = table.column("lineno").to_pylist()
        for row in range(table.num_rows):
            # Documented methods first: of two copies, keep the one that teaches docstrings.
            order_keys.append(
                (not has_doc[row], repos[row], files[row], lines[row], file_index, row)
            )
    order_keys.sort()
    dedup = Deduplicator(settings.dedup)
    masks = [np.ones(t.num_rows, dtype=bool) for t in tables]
    exact = [t.column("exact_key").to_numpy() for t in tables]
    bands = [t.column("band_keys").to_pylist() for t in tables]
    removed: Counter = Counter()
    kept: Counter = Counter()
    for _, repo, *_, file_index, row in order_keys:
        key, row_bands = int(exact[file_index][row]), bands[file_index][row]
        verdict = None
        if excluded and (
            blocked.match(key, row_bands) or int(bodies[file_index][row]) in blocked_bodies
        ):
            verdict = "excluded"
        verdict = verdict or dedup.offer(key, row_bands)
        if verdict:
            masks[file_index][row] = False
            removed[verdict] += 1
        else:
            kept[repo] += 1
    return masks, removed, kept


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
