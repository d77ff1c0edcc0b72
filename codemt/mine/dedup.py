"""Exact and near-duplicate removal of methods, across every source and shard of a corpus.

Exact duplicates share the same normalised code: signature and body after unparsing, so
copies that differ only in formatting, comments or docstring are one method.

Near duplicates are found with MinHash LSH (`datasketch` for the MinHash signatures and
the choice of bands). The choices and why:

- Shingles are 5-grams of code tokens, after alpha-renaming the method's parameters and
  local variables to `v0, v1, ...` in order of first appearance. A clone whose variables
  were renamed has the very same shingles, so it is always caught; attribute, function
  and class names are kept, so `self.width` and `self.height` getters stay apart.
- 128 permutations (half of BigCode's 256: methods are much shorter than files, and
  half the hashing halves the cost) and a Jaccard threshold of 0.8, between BigCode's
  0.7 for files and CodeParrot's 0.85: short methods that share a common skeleton are
  not merged, edited copies are. datasketch picks 9 bands of 13 rows for these.
- Methods of fewer than 24 tokens only get exact de-duplication: their shingle sets are
  too small for the Jaccard estimate to mean anything.

Only the band hashes (9 x 8 bytes a method) are kept, not the signatures, so the global
pass holds little memory. Which method of a cluster survives is decided by a fixed order
(documented ones first, then by repo, path, line), so the corpus does not depend on the
order in which workers finished.
"""

from __future__ import annotations

import ast
import hashlib
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class DedupSettings:
    """How duplicates are found; see the module docstring for why these defaults."""

    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    shingle_size: int = 5
    min_tokens: int = 24

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 16:
            raise ValueError(f"num_perm must be at least 16, got {self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be at least 1, got {self.shingle_size}")


_TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")


def exact_key(signature: str, body: str) -> int:
    """A 63-bit hash of a method's normalised code (docstring excluded)."""
    digest = hashlib.blake2b(f"{signature}\n{body}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def local_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters and locally assigned names of a method (the names a clone may rename)."""
    names: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    names.discard("self")
    names.discard("cls")
    return names


def code_tokens(signature: str, body: str, renamable: set[str]) -> list[str]:
    """Code tokens of a method with the `renamable` names alpha-renamed (`v0`, `v1`, ...)."""
    renamed: dict[str, str] = {}
    tokens = []
    for token in _TOKEN.findall(f"{signature}\n{body}"):
        if token in renamable and not keyword.iskeyword(token):
            token = renamed.setdefault(token, f"v{len(renamed)}")
        tokens.append(token)
    return tokens


@lru_cache(maxsize=4)
def _lsh_plan(threshold: float, num_perm: int) -> tuple[int, int, tuple]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    permutations = MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations
    return lsh.b, lsh.r, permutations


def band_keys(tokens: list[str], settings: DedupSettings) -> list[int] | None:
    """The LSH band hashes of a method's shingles, or None if it is too short for near-dedup."""
    if len(tokens) < settings.min_tokens:
        return None
    from datasketch import MinHash

    bands, rows, permutations = _lsh_plan(settings.threshold, settings.num_perm)
    k = settings.shingle_size
    shingles = {" ".join(tokens[i : i + k]).encode() for i in range(len(tokens) - k + 1)}
    minhash = MinHash(
        num_perm=settings.num_perm, seed=1, permutations=permutations, scheme="affine32"
    )
    minhash.update_batch(list(shingles))
    values = minhash.hashvalues.astype(np.uint64)
    keys = []
    for band in range(bands):
        chunk = values[band * rows : (band + 1) * rows].tobytes()
        digest = hashlib.blake2b(chunk, digest_size=8, person=band.to_bytes(2, "little")).digest()
        keys.append(int.from_bytes(digest, "little") >> 1)
    return keys


class Deduplicator:
    """Greedy global de-duplication: offer methods in preference order, keep the first of each cluster.

    A method is an exact duplicate if a kept method had the same exact key, and a near
    duplicate if it shares an LSH band with a kept method (MinHash LSH's candidate rule).
    """

    def __init__(self, settings: DedupSettings):
        self.settings = settings
        bands, _, _ = _lsh_plan(settings.threshold, settings.num_perm)
        self._exact: set[int] = set()
        self._bands: list[set[int]] = [set() for _ in range(bands)]

    def offer(self, exact: int, bands: Iterable[int] | None) -> str | None:
        """Return None if the method is kept, else "exact_duplicate" or "near_duplicate"."""
        if self.settings.exact:
            if exact in self._exact:
                return "exact_duplicate"
            self._exact.add(exact)
        if self.settings.near and bands is not None:
            bands = list(bands)
            if any(key in table for key, table in zip(bands, self._bands, strict=True)):
                return "near_duplicate"
            for key, table in zip(bands, self._bands, strict=True):
                table.add(key)
        return None
