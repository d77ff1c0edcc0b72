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
import zlib
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


_ASSIGNED = re.compile(
    r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?::[^=\n]*)?(?:[-+*/%&|^@]|//|\*\*|>>|<<)?=(?!=)"
    r"|\bfor\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+in\b"
    r"|\bas\s+([A-Za-z_]\w*)",
    re.MULTILINE,
)


def local_names(function: ast.FunctionDef | ast.AsyncFunctionDef, body: str) -> set[str]:
    """Parameters and locally assigned names of a method (the names a clone may rename).

    Parameters come from the AST; assigned names from the normalised body text (plain and
    augmented assignments, `for` targets, `as` names), which is much cheaper than walking
    the tree of every method and exact enough for alpha-renaming.
    """
    args = function.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    names = {a.arg for a in params if a is not None}
    for match in _ASSIGNED.finditer(body):
        for group in match.groups():
            if group:
                names.update(part.strip() for part in group.split(","))
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
    # Stable 32-bit token hashes (crc32, the same in every worker process), combined
    # polynomially over each window of `shingle_size` tokens into one hash per shingle.
    token_hashes = np.fromiter(
        (zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens)
    )
    k = settings.shingle_size
    shingles = np.zeros(len(tokens) - k + 1, dtype=np.uint64)
    for offset in range(k):
        shingles = (
            shingles * np.uint64(1_000_003) + token_hashes[offset : offset + len(shingles)]
        ) & np.uint64(0xFFFFFFFF)
    minhash = MinHash(
        num_perm=settings.num_perm,
        seed=1,
        permutations=permutations,
        scheme="affine32",
        hashfunc=int,
    )
    minhash.update_batch(np.unique(shingles).tolist())
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
