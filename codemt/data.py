"""Feeding the model: token ids cached once, examples planned per epoch, batches by token budget.

- `TokenCache` tokenises every method's features once, streaming from the Parquet shards,
  and keeps the ids in one flat memory-mapped int32 array (with offsets per method and
  field). Its folder is named by a fingerprint of the tokenizer, the corpus manifest, the
  split and the cache format, so any change builds a new cache instead of reusing a stale one.
- `ExampleData` draws, each epoch, one example per method (a multi-mode translation or a
  span-masking example), computes every example's length without building it, sorts
  examples by length inside large shuffled pools and cuts batches by a token budget, so
  little of a batch is padding. The plan depends only on the seed and the epoch; data-
  parallel ranks take every `world_size`-th batch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codemt import corpus
from codemt.examples import (
    FEATURES,
    TOKEN_FIELDS,
    ExampleSettings,
    Mode,
    Vocabulary,
    available_modes,
    build_span_masking,
    build_translation,
    control_ids,
    feature_texts,
    neighbor_length,
    pretraining_ids,
    source_budgets,
    span_counts,
    target_style,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CACHE_FORMAT = 5  # 4: `key.npy`; 5: keys from `exact_key`
NEIGHBORS_FORMAT = 1  # of the `neighbors-*.npz` files beside a cache
TOKENS_FILE = "tokens.int32"  # every id of every field, back to back, raw little-endian int32
STAGES = ("pretrain", "multimode")
_STYLE_CODES = ("", "summary", "google", "numpy", "rest", "other")


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


class TokenCache:
    """Token ids of every method's features in one corpus split, memory-mapped from disk.

    `lengths[i, f]` is the number of tokens of field `TOKEN_FIELDS[f]` of method `i`;
    `ids(i, name)` returns them.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        tokens_path = self.folder / TOKENS_FILE
        # (total_tokens,) int32; np.memmap cannot map an empty file. A plain array view of the
        # map: slicing a memmap object costs far more than slicing an array.
        self.tokens = (
            np.memmap(tokens_path, dtype=np.int32, mode="r").view(np.ndarray)
            if tokens_path.stat().st_size
            else np.zeros(0, np.int32)
        )
        self.offsets = np.load(self.folder / "offsets.npy")  # (methods, fields + 1)
        self.lengths = np.diff(self.offsets, axis=1)  # (methods, fields)
        self.style = np.load(self.folder / "style.npy")  # index into _STYLE_CODES
        self.docstring_task = np.load(self.folder / "docstring_task.npy")
        self.key = np.load(self.folder / "key.npy")  # `method_keys`
        self.meta = json.loads((self.folder / "meta.json").read_text())

    def __len__(self) -> int:
        return len(self.offsets)

    def ids(self, method: int, name: str) -> np.ndarray:
        """The token ids of one field of one method."""
        f = TOKEN_FIELDS.index(name)
        return self.tokens[self.offsets[method, f] : self.offsets[method, f + 1]]

    def fields(self, method: int) -> dict[str, np.ndarray]:
        """All token fields of one method."""
        return {name: self.ids(method, name) for name in TOKEN_FIELDS}

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
        from codemt.memory import split_neighbors

        found = split_neighbors(
            Path(self.meta["corpus"]), self.meta["split"], k, self.rows(), progress=progress
        )
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz")
        np.savez(tmp, **found)
        tmp.replace(path)  # whole, whoever finishes last
        return found

    @staticmethod
    def fingerprint(corpus_dir: Path, split: str, tokenizer_json: str) -> str:
        """What the cache depends on: corpus (its manifest), split, tokenizer and format."""
        manifest = corpus.manifest_path(corpus_dir).read_bytes()
        return _digest(
            b"\0".join(
                [manifest, split.encode(), tokenizer_json.encode(), str(CACHE_FORMAT).encode()]
            )
        )

    @classmethod
    def build(
        cls,
        corpus_dir: Path,
        split: str,
        tokenizer,
        cache_root: Path,
        *,
        limit: int | None = None,
        batch_size: int = 2048,
        workers: int | None = None,
    ) -> TokenCache:
        """Open the cache for (corpus, split, tokenizer), tokenising the split first if needed.

        `limit` keeps that many of the split's methods, evenly spread over it (`spread_rows`):
        splits are stored project by project, and the first few thousand methods would be a
        handful of projects. `workers` processes tokenise batches of `batch_size` methods
        (default: one per core, up to one per batch); the cache is the same whatever their
        number. They are spawned, so a script that builds a cache needs the
        `if __name__ == "__main__":` guard (as for `codemt.mine`).

        The cache is written to a temporary folder and renamed into place, so a killed run
        never leaves a half-written cache behind.
        """
        corpus.read_manifest(corpus_dir)  # a clear error if this is no corpus
        key = cls.fingerprint(corpus_dir, split, tokenizer.to_str()) + (
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
            cls._write(tmp, corpus_dir, split, tokenizer, limit, batch_size, workers)
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
        [_STYLE_CODES.index(r["docstring_style"] or "") for r in records], dtype=np.int8
    )
    eligible = np.asarray([bool(r["docstring_task"]) for r in records], dtype=bool)
    keys = method_keys([r["signature"] for r in records], [r["body"] or "" for r in records])
    return ids, lengths, styles, eligible, keys


def method_keys(signatures: Sequence[str], bodies: Sequence[str]) -> np.ndarray:
    """A number in [0, 1) per method, from its signature and body alone (float64): the
    same for a method wherever it is stored, so a share of methods chosen by key
    (`ExampleSettings.undocumented_kept`) is the same in a corpus and in a copy of it."""
    from codemt.mine.dedup import exact_key  # mining's hash of a method's code: 63 bits

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


@dataclass(frozen=True)
class BatchSettings:
    """How examples are grouped into batches."""

    max_tokens: int = 8192  # budget per batch: examples x (longest source + longest target)
    pool_batches: int = 1024  # examples are length-sorted inside pools of about this many batches
    max_padding: float = 0.1  # a batch closes early rather than be more padding than this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 32:
            raise ValueError(f"max_tokens per batch must be at least 32, got {self.max_tokens}")
        if not 0.0 < self.max_padding <= 1.0:
            raise ValueError(f"max_padding must be in (0, 1], got {self.max_padding}")
        if self.pool_batches < 1:
            raise ValueError(f"pool_batches must be at least 1, got {self.pool_batches}")


@dataclass(frozen=True)
class Planned:
    """One example of an epoch, planned but not built: which method, how, and how long."""

    method: int
    mode: Mode | None  # None: span masking
    style: str | None
    source_len: int
    target_len: int
    neighbors: bool = False  # read with its project neighbours (`ExampleSettings.neighbors`)


class ExampleData:
    """Deterministic, token-budget batches of one stage's examples over a token cache.

    Implements the training loop's `TrainData` protocol.
    """

    def __init__(
        self,
        cache: TokenCache,
        vocab: Vocabulary,
        stage: str,
        examples: ExampleSettings,
        batching: BatchSettings,
    ):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        self.cache, self.vocab, self.stage = cache, vocab, stage
        self.examples, self.batching = examples, batching
        self._plans: dict[int, tuple[list[Planned], list[list[int]]]] = {}
        # What does not change between epochs, computed once: planning an epoch of a large
        # corpus is then a few random draws per method.
        # Which of signature, docstring, body a method has and whether it is documented for
        # the task, as 4 bits: a method's modes and their weights depend on nothing else.
        has = cache.lengths[:, [TOKEN_FIELDS.index(f) for f in FEATURES]] > 0
        bits = np.column_stack([has, cache.docstring_task.astype(bool)]).reshape(len(cache), 4)
        self._kinds: list[int] = (bits * (1 << np.arange(4))).sum(axis=1).tolist()
        # The methods that take part at all: every documented one, and the undocumented
        # ones whose key is below the share kept. Left out before any random draw, so a
        # copy of the corpus without them plans the very same epochs.
        kept = cache.docstring_task.astype(bool) | (cache.key < examples.undocumented_kept)
        self._kept: list[bool] = kept.tolist()
        # A method's place among those taking part: what seeds its span masking, the same
        # in such a copy as here.
        self._rank: list[int] = (np.cumsum(kept) - 1).tolist()
        self._choices: dict[int, tuple[list[Mode], np.ndarray | None, bool]] = {}
        self._lengths: dict[tuple[int, int, str | None, bool], tuple[int, int]] = {}
        # Project memory: each method's neighbours per target, indices into the cache.
        self._neighbors: dict[str, np.ndarray] = (
            cache.neighbors(examples.neighbors)
            if examples.neighbors and stage == "multimode"
            else {}
        )

    # -- planning

    def _plan_translation(self, method: int, rng: np.random.Generator) -> Planned | None:
        # The random draws are those of `rng.choice(len(modes), p=weights)` and are made in
        # the same order whatever is cached, so a plan depends only on the seed and epoch.
        modes, cdf, documented = self._mode_choices(method)
        share = self.examples.undocumented_share
        if not documented and share < 1.0 and rng.random() >= share:
            return None
        if cdf is None:
            return None
        index = int(cdf.searchsorted(rng.random(), side="right"))
        mode = modes[index]
        style = None
        if mode.target == "docstring":
            ask_summary = rng.random() < self.examples.summary_fraction
            style = target_style(_STYLE_CODES[self.cache.style[method]], ask_summary)
        # Drawn only where neighbours are trained with: other plans stay as they were.
        with_neighbors = bool(self._neighbors) and rng.random() < self.examples.neighbor_share
        with_neighbors = with_neighbors and len(self._neighbor_list(method, mode)) > 0
        key = (method, index, style, with_neighbors)
        if key not in self._lengths:
            self._lengths[key] = self._translation_lengths(method, mode, style, with_neighbors)
        source_len, target_len = self._lengths[key]
        return Planned(method, mode, style, source_len, target_len, with_neighbors)

    def _neighbor_list(self, method: int, mode: Mode) -> list[int]:
        """A method's neighbours for a mode's target, most alike first (none for signatures)."""
        found = self._neighbors.get(mode.target)
        if found is None:
            return []
        return [int(i) for i in found[method, : self.examples.neighbors] if i >= 0]

    def _mode_choices(self, method: int) -> tuple[list[Mode], np.ndarray | None, bool]:
        """The modes a method supports, the cumulative distribution to draw one from (None:
        no mode, or none with weight) and whether it has a docstring fit for the task."""
        kind = self._kinds[method]
        if kind not in self._choices:
            present = dict(zip(FEATURES, [bool(kind >> i & 1) for i in range(3)], strict=True))
            documented = bool(kind >> 3 & 1)
            modes = available_modes(present, documented)
            weights = np.asarray([self.examples.weight(m) for m in modes])
            cdf = None
            if modes and weights.sum() > 0:
                cdf = (weights / weights.sum()).cumsum()
                cdf /= cdf[-1]
            self._choices[kind] = (modes, cdf, documented)
        return self._choices[kind]

    def _translation_lengths(
        self, method: int, mode: Mode, style: str | None, with_neighbors: bool = False
    ) -> tuple[int, int]:
        """An example's source and target lengths, computed without building it."""
        lengths = dict(zip(TOKEN_FIELDS, self.cache.lengths[method].tolist(), strict=True))
        if self.examples.names_follow_signature(mode):
            lengths["signature"] += lengths["names"]
        sources = list(mode.sources)
        if self.examples.context:
            sources += [f for f in ("imports", "class", "decorators") if lengths[f]]
        fixed = len(control_ids(mode, style, self.vocab)) + len(sources) + 1
        budgets = source_budgets(
            {f: lengths[f] for f in sources}, self.examples.max_source_tokens - fixed
        )
        target_field = "summary" if style == "summary" else mode.target
        # Whole-line cutting can only shorten, so these are upper bounds; close enough to sort by.
        source_len = fixed + sum(budgets.values())
        if with_neighbors:
            for other in self._neighbor_list(method, mode):
                other_lengths = dict(
                    zip(TOKEN_FIELDS, self.cache.lengths[other].tolist(), strict=True)
                )
                source_len += neighbor_length(other_lengths, mode.target, self.examples)
        target_len = min(lengths[target_field], self.examples.max_target_tokens - 1) + 1
        return source_len, target_len

    def _plan_span(self, method: int) -> Planned:
        lengths = dict(zip(TOKEN_FIELDS, self.cache.lengths[method].tolist(), strict=True))
        names = [f for f in ("signature", "docstring", "body") if lengths[f]]
        if self.examples.context:
            names += [f for f in ("imports", "class", "decorators") if lengths[f]]
        target_share = self.examples.noise_density * (1 + 1 / self.examples.mean_noise_span)
        room = min(
            self.examples.max_source_tokens - 1,
            int((self.examples.max_target_tokens - 2) / target_share),
        )
        length = len(names) + sum(
            source_budgets({f: lengths[f] for f in names}, room - len(names)).values()
        )
        source_len, target_len = span_counts(length, self.examples)
        return Planned(method, None, None, source_len, target_len)

    def plan(self, epoch: int) -> tuple[list[Planned], list[list[int]]]:
        """The epoch's examples and its batches (lists of example indices), cached per epoch."""
        if epoch in self._plans:
            return self._plans[epoch]
        rng = np.random.default_rng(
            [self.batching.seed, self.examples.seed, epoch, STAGES.index(self.stage)]
        )
        planned: list[Planned] = []
        for method in range(len(self.cache)):
            if not self._kept[method]:
                continue
            item = (
                self._plan_translation(method, rng)
                if self.stage == "multimode"
                else self._plan_span(method)
            )
            if item is not None:
                planned.append(item)
        batches = self._batch(planned, rng)
        self._plans = {epoch: (planned, batches)}  # keep only the current epoch
        return planned, batches

    def _batch(self, planned: list[Planned], rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(len(planned))
        source = np.asarray([p.source_len for p in planned])
        target = np.asarray([p.target_len for p in planned])
        mean_cost = float((source + target).mean()) if len(planned) else 1.0
        pool = max(int(self.batching.pool_batches * self.batching.max_tokens / mean_cost), 1)
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            # Padding is paid on both sides: group sources of about the same length (bins 10%
            # apart), then sort by target length inside each group, up and down in turn, so a
            # batch that straddles two groups joins examples of similar targets.
            source_bin = np.floor(np.log(source[chunk]) / np.log(1.1)).astype(np.int64)
            snake = np.where(source_bin % 2 == 0, target[chunk], -target[chunk])
            chunk = chunk[np.lexsort((source[chunk], snake, source_bin))]
            current: list[int] = []
            longest_source = longest_target = real = 0
            for index in chunk.tolist():
                s = max(longest_source, source[index])
                t = max(longest_target, target[index])
                padded = (len(current) + 1) * (s + t)
                new_real = real + source[index] + target[index]
                # Close the batch when the next example would burst the token budget, or
                # would make the batch more than `max_padding` padding (sparse length ranges).
                if current and (
                    padded > self.batching.max_tokens
                    or new_real < (1 - self.batching.max_padding) * padded
                ):
                    batches.append(current)
                    current, s, t, new_real = (
                        [],
                        source[index],
                        target[index],
                        source[index] + target[index],
                    )
                current.append(index)
                longest_source, longest_target, real = s, t, new_real
            if current:
                batches.append(current)
        return [batches[i] for i in rng.permutation(len(batches))]

    # -- the TrainData protocol

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        """Batches this rank sees in `epoch` (every rank sees the same number)."""
        return len(self.plan(epoch)[1]) // world_size

    def tokens(self, epoch: int, sample: int = 64) -> int:
        """The real tokens of the epoch's batches, all ranks together. Planned lengths are
        upper bounds (whole-line cutting only shortens: by 5% on the recipe's corpus), so
        they are scaled by what `sample` batches spread over the epoch hold once built (all
        of them, if fewer)."""
        planned, batches = self.plan(epoch)
        lengths = [sum(planned[i].source_len + planned[i].target_len for i in b) for b in batches]
        chosen = spread_rows(len(batches), sample)
        chosen = range(len(batches)) if chosen is None else chosen.tolist()
        built = planned_there = 0
        for index in chosen:
            for i in batches[index]:
                source, target = self.build(planned[i], epoch)
                built += len(source) + len(target)
            planned_there += lengths[index]
        return round(sum(lengths) * built / planned_there) if planned_there else 0

    def batches(
        self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict]:
        """The epoch's batches for one rank, from batch `start` on (skipping costs nothing)."""
        import torch

        planned, batches = self.plan(epoch)
        usable = len(batches) // world_size * world_size
        for position in range(rank + start * world_size, usable, world_size):
            pairs = [self.build(planned[i], epoch) for i in batches[position]]
            yield collate(pairs, self.vocab.pad, torch)

    def build(self, item: Planned, epoch: int) -> tuple[list[int], list[int]]:
        """Build one planned example's (source ids, target ids)."""
        tokens = self.cache.fields(item.method)
        if item.mode is not None:
            # Python ints: cutting at line breaks looks at single ids, which numpy makes slow.
            tokens = {name: ids.tolist() for name, ids in tokens.items()}
            neighbors = [
                {name: ids.tolist() for name, ids in self.cache.fields(other).items()}
                for other in (self._neighbor_list(item.method, item.mode) if item.neighbors else [])
            ]
            return build_translation(
                tokens, item.mode, item.style, self.vocab, self.examples, neighbors
            )
        rng = np.random.default_rng([self.examples.seed, epoch, self._rank[item.method]])
        return build_span_masking(
            pretraining_ids(tokens, self.vocab, self.examples), self.vocab, self.examples, rng
        )

    def padding_waste(self, epoch: int = 0) -> float:
        """Share of padding among the tokens of the epoch's batches (as planned)."""
        planned, batches = self.plan(epoch)
        real = padded = 0
        for batch in batches:
            s = max(planned[i].source_len for i in batch)
            t = max(planned[i].target_len for i in batch)
            padded += len(batch) * (s + t)
            real += sum(planned[i].source_len + planned[i].target_len for i in batch)
        return 1 - real / padded if padded else 0.0


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, torch) -> dict:
    """Pad a list of (source, target) id lists into model inputs.

    input_ids, attention_mask: (batch, source_len); labels: (batch, target_len), -100 on padding.
    """
    source_len = max(len(s) for s, _ in pairs)
    target_len = max(len(t) for _, t in pairs)
    # Filled in numpy (one copy per row from a list), handed to torch without a copy.
    input_ids = np.full((len(pairs), source_len), pad_id, dtype=np.int64)
    labels = np.full((len(pairs), target_len), -100, dtype=np.int64)
    for row, (source, target) in enumerate(pairs):
        input_ids[row, : len(source)] = source
        labels[row, : len(target)] = target
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy((input_ids != pad_id).astype(np.int64)),
        "labels": torch.from_numpy(labels),
    }
