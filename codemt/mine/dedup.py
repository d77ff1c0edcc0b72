"""Exact and near-duplicate removal of methods, across every source and shard of a corpus.

Exact duplicates share the same normalised code: signature and body after unparsing, so
copies that differ only in formatting, comments or docstring are one method.

Near duplicates are found with MinHash LSH (`datasketch` chooses the bands; the MinHash
signatures of a file's methods are computed together, vectorised). The choices and why:

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
def lsh_plan(threshold: float, num_perm: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Bands and rows (datasketch's optimum for the threshold) and the permutations."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    rng = np.random.RandomState(1)
    # Affine permutations a*h + b mod 2^32 with odd a are bijections of 32-bit hashes;
    # uint32 arithmetic wraps around, which is the mod 2^32.
    a = rng.randint(1, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.randint(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return lsh.b, lsh.r, a, b


def _mix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (uint32 in, uint32 out): nearby inputs, unrelated hashes."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def band_keys_batch(
    token_lists: list[list[str]], settings: DedupSettings
) -> list[list[int] | None]:
    """The LSH band keys of many methods at once (None for those too short for near-dedup).

    All methods of a file are hashed in one vectorised pass, several times faster than one
    `datasketch.MinHash` a method: stable 32-bit token hashes (crc32, the same in every
    worker process) are combined over each window of `shingle_size` tokens, permuted by
    every permutation into a (shingles, permutations) matrix, and reduced to each
    method's minimum per permutation. Repeated shingles do not change a minimum, so no
    de-duplication of shingles is needed.
    """
    bands, rows, a, b = lsh_plan(settings.threshold, settings.num_perm)
    k = settings.shingle_size
    keys: list[list[int] | None] = [None] * len(token_lists)
    eligible = [i for i, tokens in enumerate(token_lists) if len(tokens) >= settings.min_tokens]
    if not eligible:
        return keys
    lengths = np.asarray([len(token_lists[i]) for i in eligible])
    vocabulary: dict[str, int] = {}
    hashes = np.fromiter(
        (
            vocabulary.get(t) or vocabulary.setdefault(t, zlib.crc32(t.encode()))
            for i in eligible
            for t in token_lists[i]
        ),
        dtype=np.uint32,
        count=int(lengths.sum()),
    )
    # Windows over the concatenation; keep those that lie inside one method.
    windows = np.zeros(len(hashes) - k + 1, dtype=np.uint32)
    for offset in range(k):
        windows = windows * np.uint32(1_000_003) + hashes[offset : offset + len(windows)]
    method_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    per_method = lengths - k + 1
    inside = np.concatenate(
        [np.arange(s, s + n) for s, n in zip(method_starts, per_method, strict=True)]
    )
    shingles = _mix32(windows[inside])
    permuted = shingles[:, None] * a[None, :] + b[None, :]  # (shingles, perms), mod 2^32
    starts = np.concatenate([[0], np.cumsum(per_method)[:-1]])
    signatures = np.minimum.reduceat(permuted, starts, axis=0)  # (methods, perms)
    for index, band_row in zip(eligible, fold_bands(signatures, bands, rows), strict=True):
        keys[index] = band_row
    return keys


def fold_bands(signatures: np.ndarray, bands: int, rows: int) -> list[list[int]]:
    """One 63-bit key per band of each MinHash signature, (methods, permutations) -> per
    method `bands` keys: the band's index and rows folded together polynomially (mod 2^64),
    so that the same rows in two bands make different keys (an offset added after the fold
    would not survive the shift to 63 bits: bands 2k and 2k + 1 would collide)."""
    signatures = signatures.astype(np.uint64)
    folded = np.tile(np.arange(1, bands + 1, dtype=np.uint64), (len(signatures), 1))
    for row in range(rows):
        folded = folded * np.uint64(0x100000001B3) + signatures[:, row : bands * rows : rows]
    return (folded >> np.uint64(1)).tolist()


def band_keys(tokens: list[str], settings: DedupSettings) -> list[int] | None:
    """The LSH band keys of one method's shingles, or None if it is too short for near-dedup."""
    return band_keys_batch([tokens], settings)[0]


class Deduplicator:
    """Greedy global de-duplication: offer methods in preference order, keep the first of each cluster.

    A method is an exact duplicate if a kept method had the same exact key, and a near
    duplicate if it shares an LSH band with a kept method (MinHash LSH's candidate rule).
    This is the rule one method at a time, over Python sets (the exclusion check of a
    small file, a caller offering methods as they come); a whole corpus is decided by
    `codemt.mine.selection.deduplicate`, the same rule over ranked keys in arrays.
    """

    def __init__(self, settings: DedupSettings):
        self.settings = settings
        bands, *_ = lsh_plan(settings.threshold, settings.num_perm)
        self._exact: set[int] = set()
        self._bands: list[set[int]] = [set() for _ in range(bands)]

    def offer(self, exact: int, bands: Iterable[int] | None) -> str | None:
        """Return None if the method is kept, else "exact_duplicate" or "near_duplicate"."""
        bands = None if bands is None else list(bands)
        verdict = self.match(exact, bands)
        # A near duplicate's code is still remembered: its exact copies count as exact.
        if self.settings.exact:
            self._exact.add(exact)
        if verdict is None and self.settings.near and bands is not None:
            for key, table in zip(bands, self._bands, strict=True):
                table.add(key)
        return verdict

    def remember(self, exact: int, bands: Iterable[int] | None) -> None:
        """Keep the method, whatever it duplicates: `match` then finds its copies too."""
        self._exact.add(exact)
        if bands is not None:
            for key, table in zip(bands, self._bands, strict=True):
                table.add(key)

    def match(self, exact: int, bands: Iterable[int] | None) -> str | None:
        """What `offer` would say of the method, without keeping it: None if no kept method
        is a duplicate of it, else "exact_duplicate" or "near_duplicate"."""
        if self.settings.exact and exact in self._exact:
            return "exact_duplicate"
        if (
            self.settings.near
            and bands is not None
            and any(key in table for key, table in zip(bands, self._bands, strict=True))
        ):
            return "near_duplicate"
        return None
