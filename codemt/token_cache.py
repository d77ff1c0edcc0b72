"""Every method's features tokenised once: `TokenCache`.

It streams the Parquet shards of a corpus split through the tokenizer (in worker
processes) and keeps the ids in one flat memory-mapped int32 array, with offsets per method
and field. Its folder is named by a fingerprint of the tokenizer, the corpus manifest, the
split and the cache format, so any change builds a new cache instead of reusing a stale one;
it is written to a temporary folder and renamed into place, so a killed run leaves none
half-written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import multiprocessing
import os
import shutil
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codemt import corpus
from codemt.examples import TOKEN_FIELDS, feature_texts
from codemt.memory import split_neighbors
from codemt.mine.dedup import exact_key

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The docstring styles a cache stores, by code (0: none).
STYLE_CODES = ("", "summary", "google", "numpy", "rest", "other")


CACHE_FORMAT = 5  # 4: `key.npy`; 5: keys from `exact_key`


NEIGHBORS_FORMAT = 2  # of the `neighbors-*.npz` files beside a cache; 2: prose summaries only


TOKENS_FILE = "tokens.int32"  # every id of every field, back to back, raw little-endian int32


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def spread_rows(total: int, limit: int | None) -> np.ndarray | None:
    """The rows a split of `total` methods keeps when cut to `limit`: evenly spaced over it
    (None: all of them)."""
    if limit is None or limit >= total:
        return None
    return np.unique(np.linspace(0, total - 1, max(limit, 1)).round().astype(np.int64))


# The corpus columns a token cache is built from: all that training reads of a corpus.
CACHED_COLUMNS = (
    "signature", "docstring", "body", "class_name", "class_bases", "class_docstring",
    "decorators", "imports", "docstring_style", "docstring_task",
)  # fmt: skip


def _remove_abandoned(folder: Path) -> None:
    """Delete the temporary folders of `folder` that processes no longer running left (on
    this machine: a cache folder is not meant to be shared between machines building it)."""
    for tmp in folder.parent.glob(f"{folder.name}.tmp*"):
        pid = tmp.name.removeprefix(f"{folder.name}.tmp").lstrip("-").split("-")[0]
        if not pid.isdigit() or not _running(int(pid)):  # (`.tmp` alone: older versions')
            shutil.rmtree(tmp, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _map_tokens(path: Path) -> np.ndarray:
    """The ids file as a read-only array over a memory map, read at random: training
    takes each batch's methods from anywhere in the file, and the kernel's read-ahead
    (made for reading on) would fetch many pages for each one used; told that reads are
    random, it fetches what is read. A plain array, not an `np.memmap`: slicing one of
    those costs far more."""
    with open(path, "rb") as file:
        if not os.fstat(file.fileno()).st_size:  # a map cannot be empty
            return np.zeros(0, np.int32)
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):  # not on Windows
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=np.int32)


class FieldLengths:
    """`lengths[rows]` (methods x fields) or `lengths[rows, fields]`: the number of tokens
    of each field of each method, computed from the offsets when asked for."""

    def __init__(self, offsets: np.ndarray):
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, key) -> np.ndarray:
        rows, fields = key if isinstance(key, tuple) else (key, slice(None))
        return np.diff(np.asarray(self._offsets[rows]), axis=-1)[..., fields]


class TokenCache:
    """Token ids of every method's features in one corpus split, memory-mapped from disk.

    `lengths[i, f]` is the number of tokens of field `TOKEN_FIELDS[f]` of method `i`;
    `ids(i, name)` returns them.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.tokens = _map_tokens(self.folder / TOKENS_FILE)  # (total_tokens,) int32
        # (methods, fields + 1), mapped too: at tens of millions of methods, 72 bytes a
        # method is more than a training process should hold for what it reads rarely.
        self.offsets = np.load(self.folder / "offsets.npy", mmap_mode="r").view(np.ndarray)
        self.lengths = FieldLengths(self.offsets)
        self.style = np.load(self.folder / "style.npy")  # index into STYLE_CODES
        self.docstring_task = np.load(self.folder / "docstring_task.npy")
        self.key = np.load(self.folder / "key.npy")  # `method_keys`
        self.meta = json.loads((self.folder / "meta.json").read_text())

    def __len__(self) -> int:
        return len(self.offsets)

    def ids(self, method: int, name: str) -> np.ndarray:
        """The token ids of one field of one method."""
        f = TOKEN_FIELDS.index(name)
        start, end = self.offsets[method, f : f + 2].tolist()
        return self.tokens[start:end]

    def fields(self, method: int) -> dict[str, np.ndarray]:
        """All token fields of one method."""
        bounds = self.offsets[method].tolist()
        return {name: self.tokens[bounds[f] : bounds[f + 1]] for f, name in enumerate(TOKEN_FIELDS)}

    def rows(self) -> np.ndarray | None:
        """The split's rows this cache holds (None: all of them, in order)."""
        limit = self.meta.get("limit")
        if limit is None and "-spread" in self.folder.name:  # caches written before `limit`
            limit = int(self.folder.name.rsplit("-spread", 1)[1])
        if limit is None:
            return None
        shards = corpus.shard_paths(Path(self.meta["corpus"]), self.meta["split"])
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
        return spread_rows(total, limit)

    def neighbors(self, k: int, *, progress: bool = True) -> dict[str, np.ndarray]:
        """Each method's training neighbours per target (`codemt.memory.split_neighbors`,
        indices into this cache), searched once and kept beside the tokens."""
        path = self.folder / f"neighbors-{NEIGHBORS_FORMAT}-{k}.npz"
        if path.is_file():
            with np.load(path) as stored:
                return {name: stored[name] for name in stored.files}

        found = split_neighbors(
            Path(self.meta["corpus"]), self.meta["split"], k, self.rows(), progress=progress
        )
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz")
        np.savez(tmp, **found)
        tmp.replace(path)  # whole, whoever finishes last
        return found

    @staticmethod
    def fingerprint(data: corpus.Corpus, split: str, tokenizer_json: str) -> str:
        """What the cache depends on: corpus (its manifest), split, tokenizer and format."""
        return _digest(
            b"\0".join(
                [
                    data.manifest_bytes,
                    split.encode(),
                    tokenizer_json.encode(),
                    str(CACHE_FORMAT).encode(),
                ]
            )
        )

    @classmethod
    def build(
        cls,
        data: corpus.Corpus | Path,
        split: str,
        tokenizer,
        cache_root: Path,
        *,
        limit: int | None = None,
        batch_size: int = 2048,
        workers: int | None = None,
    ) -> TokenCache:
        """Open the cache for (corpus, split, tokenizer), tokenising the split first if needed
        (`data`: the corpus, opened with `codemt.corpus.Corpus.open`, or its folder).

        `limit` keeps that many of the split's methods, evenly spread over it (`spread_rows`):
        splits are stored project by project, and the first few thousand methods would be a
        handful of projects. `workers` processes tokenise batches of `batch_size` methods
        (default: one per core, up to one per batch); the cache is the same whatever their
        number. They are spawned, so a script that builds a cache needs the
        `if __name__ == "__main__":` guard (as for `codemt.mine`).

        The cache is written to a temporary folder and renamed into place, so a killed run
        never leaves a half-written cache behind.
        """
        if not isinstance(data, corpus.Corpus):
            data = corpus.Corpus.open(data)
        key = cls.fingerprint(data, split, tokenizer.to_str()) + (
            f"-spread{limit}" if limit else ""
        )
        folder = Path(cache_root) / f"{split}-{key}"
        if (folder / "meta.json").is_file():
            return cls(folder)
        _remove_abandoned(folder)
        # A folder of its own, named by its process: runs that start together build side by
        # side, and the first to finish renames its folder into place.
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            cls._write(tmp, data.path, split, tokenizer, limit, batch_size, workers)
            tmp.replace(folder)  # atomic, and refused when another run's cache is there
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (folder / "meta.json").is_file():
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(folder)

    @classmethod
    def _write(cls, tmp, corpus_dir, split, tokenizer, limit, batch_size, workers) -> None:
        """Tokenise the split into the folder `tmp`, `meta.json` last."""
        offsets, styles, eligible, keys = cls._tokenize(
            corpus_dir, split, tokenizer, tmp / TOKENS_FILE, limit, batch_size, workers
        )
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "style.npy", styles)
        np.save(tmp / "docstring_task.npy", eligible)
        np.save(tmp / "key.npy", keys)
        meta = {
            "corpus": str(corpus_dir),
            "split": split,
            "limit": limit,
            "methods": len(offsets),
            "tokens": int(offsets[-1, -1]) if len(offsets) else 0,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    @staticmethod
    def _tokenize(corpus_dir, split, tokenizer, path, limit, batch_size, workers):
        """Stream the split's records, append every field's ids to `path`; return the
        offsets (methods, fields + 1), style codes, docstring-task flags and keys."""
        columns = list(CACHED_COLUMNS)
        shards = corpus.shard_paths(corpus_dir, split)
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
        keep = np.ones(total, dtype=bool)
        if (kept := spread_rows(total, limit)) is not None:
            keep[:] = False
            keep[kept] = True

        def kept_batches() -> Iterator[pa.RecordBatch]:
            first = 0  # the split's row number of the batch's first record
            for batch in corpus.iter_batches(corpus_dir, split, columns, batch_size=batch_size):
                mask = keep[first : first + batch.num_rows]
                first += batch.num_rows
                if mask.any():
                    yield batch.filter(pa.array(mask))

        if workers is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            workers = min(cores or os.cpu_count() or 1, -(-int(keep.sum()) // batch_size))
        if workers > 1:
            pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded parent
                initializer=_start_tokenizing,
                initargs=(tokenizer.to_str(),),
            )
            with pool:
                encoded = _in_order(pool, _tokenize_batch, kept_batches(), ahead=2 * workers)
                return _write_tokens(encoded, path)
        # A copy of its own, as a worker has: the caller's tokenizer is left as it is, also
        # for another thread using it meanwhile.
        own = _feature_tokenizer(tokenizer.to_str())
        encoded = (_tokenize_batch(batch, own) for batch in kept_batches())
        return _write_tokens(encoded, path)


# A worker's tokenizer, made from the parent's by `_start_tokenizing`.
_TOKENIZER = None


def _start_tokenizing(tokenizer_json: str) -> None:
    """In a worker: the tokenizer `_tokenize_batch` uses by default."""
    global _TOKENIZER
    # One thread a worker: the workers are the parallelism (a pool of threads in each of
    # them would only contend for the same cores).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _TOKENIZER = _feature_tokenizer(tokenizer_json)


def _feature_tokenizer(tokenizer_json: str) -> Tokenizer:
    """A tokenizer for feature text, which is data: a docstring that mentions "<to_body>"
    must not become the control code, so special tokens are encoded literally (and the
    control codes inserted by id later)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.encode_special_tokens = True
    return tokenizer


def _tokenize_batch(
    batch: pa.RecordBatch, tokenizer: Tokenizer | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch of methods: every field's ids back to back (int32), the fields' lengths
    (methods, fields), style codes, docstring-task flags and keys (`method_keys`)."""
    tokenizer = _TOKENIZER if tokenizer is None else tokenizer
    records = batch.to_pylist()
    texts = [feature_texts(r) for r in records]
    encoded = [
        tokenizer.encode_batch([t[name] for t in texts], add_special_tokens=False)
        for name in TOKEN_FIELDS
    ]
    # Field by field within each method, method after method: the cache's layout.
    per_method = [[field[i].ids for field in encoded] for i in range(len(records))]
    lengths = np.asarray([[len(ids) for ids in m] for m in per_method], dtype=np.int64)
    every_id = itertools.chain.from_iterable(ids for m in per_method for ids in m)
    ids = np.fromiter(every_id, dtype=np.int32, count=int(lengths.sum()))
    styles = np.asarray(
        [STYLE_CODES.index(r["docstring_style"] or "") for r in records], dtype=np.int8
    )
    eligible = np.asarray([bool(r["docstring_task"]) for r in records], dtype=bool)
    keys = method_keys([r["signature"] for r in records], [r["body"] or "" for r in records])
    return ids, lengths, styles, eligible, keys


def method_keys(signatures: Sequence[str], bodies: Sequence[str]) -> np.ndarray:
    """A number in [0, 1) per method, from its signature and body alone (float64): the
    same for a method wherever it is stored, so a share of methods chosen by key
    (`ExampleSettings.undocumented_kept`) is the same in a corpus and in a copy of it."""

    # The top 53 bits: exact in a float64, so never rounded up to 1.
    pairs = zip(signatures, bodies, strict=True)
    return np.fromiter(
        ((exact_key(s, b) >> 10) / 2**53 for s, b in pairs), dtype=np.float64, count=len(signatures)
    )


def _in_order(pool: ProcessPoolExecutor, fn, items: Iterator, ahead: int) -> Iterator:
    """`fn` of each item, computed in `pool` with at most `ahead` in flight, in order."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _write_tokens(
    encoded: Iterator, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write the ids of `_tokenize_batch` results to `path`; return the offsets into them
    (methods, fields + 1), the style codes, the docstring-task flags and the keys."""
    lengths, styles, eligible, keys = [], [], [], []
    with open(path, "wb") as out:
        for ids, field_lengths, batch_styles, batch_eligible, batch_keys in encoded:
            out.write(ids.tobytes())
            lengths.append(field_lengths)
            styles.append(batch_styles)
            eligible.append(batch_eligible)
            keys.append(batch_keys)
    if not lengths:
        empty = np.zeros((0, len(TOKEN_FIELDS) + 1), dtype=np.int64)
        return empty, np.zeros(0, np.int8), np.zeros(0, bool), np.zeros(0, np.float64)
    flat = np.concatenate(lengths).reshape(-1)  # every field of every method, in file order
    ends = np.cumsum(flat).reshape(-1, len(TOKEN_FIELDS))
    starts = ends[:, :1] - flat.reshape(-1, len(TOKEN_FIELDS))[:, :1]
    offsets = np.hstack([starts, ends])
    return offsets, np.concatenate(styles), np.concatenate(eligible), np.concatenate(keys)
