"""Feeding the model: examples planned per epoch from the token cache, batches by token budget.

- `ExampleData` reads a `codemt.token_cache.TokenCache` (every method's features tokenised
  once) and draws, each epoch, one example per method (a multi-mode translation or a
  span-masking example), computes every example's length without building it, sorts
  examples by length inside large shuffled pools and cuts batches by a token budget, so
  little of a batch is padding. The plan depends only on the seed and the epoch; data-
  parallel ranks take every `world_size`-th batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from codemt.examples import (
    CONTEXT_FEATURES,
    DOCSTRING_STYLES,
    FEATURES,
    SOURCE_PRIORITY,
    TOKEN_FIELDS,
    ExampleSettings,
    Mode,
    Vocabulary,
    available_modes,
    build_span_masking,
    build_translation,
    control_ids,
    neighbor_length,
    pretraining_ids,
    span_counts,
    span_room,
    target_style,
)
from codemt.token_cache import STYLE_CODES, TokenCache, spread_rows

STAGES = ("pretrain", "multimode")
# Methods handled per step where a step makes a temporary array per method.
_CHUNK = 65536


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


# The docstring styles a plan stores, by code (0: none, a target that is not a docstring).
PLANNED_STYLES = (None, *DOCSTRING_STYLES)


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """One epoch's examples as columns (row i is example i) and its batches: batch j is
    the examples `order[bounds[j]:bounds[j + 1]]`. About 20 bytes an example, so that a
    corpus of tens of millions of methods plans its epochs in a few hundred MB."""

    method: np.ndarray  # int32: the method of the token cache
    mode: np.ndarray  # int16: index into `modes`; -1 for span masking
    style: np.ndarray  # int8: index into PLANNED_STYLES
    source_len: np.ndarray  # int32
    target_len: np.ndarray  # int32
    neighbors: np.ndarray  # bool
    order: np.ndarray  # int32
    bounds: np.ndarray  # int64, one more than there are batches
    modes: tuple[Mode, ...]

    def __len__(self) -> int:
        return len(self.method)

    @property
    def num_batches(self) -> int:
        return len(self.bounds) - 1

    def batch(self, index: int) -> np.ndarray:
        """The example numbers of one batch."""
        return self.order[self.bounds[index] : self.bounds[index + 1]]

    def example(self, index: int) -> Planned:
        mode = int(self.mode[index])
        return Planned(
            int(self.method[index]),
            self.modes[mode] if mode >= 0 else None,
            PLANNED_STYLES[self.style[index]],
            int(self.source_len[index]),
            int(self.target_len[index]),
            bool(self.neighbors[index]),
        )

    def examples(self) -> Iterator[Planned]:
        return (self.example(i) for i in range(len(self)))

    def batch_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """Per batch: the real tokens planned, and the tokens once padded."""
        if not self.num_batches:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        source = self.source_len[self.order].astype(np.int64)
        target = self.target_len[self.order].astype(np.int64)
        starts = self.bounds[:-1]
        real = np.add.reduceat(source + target, starts)
        longest = np.maximum.reduceat(source, starts) + np.maximum.reduceat(target, starts)
        return real, longest * np.diff(self.bounds)


class ExampleData:
    """Deterministic, token-budget batches of one stage's examples over a token cache.

    Implements the training loop's `TrainData` protocol. What it keeps per method and per
    planned example are numpy columns of a few bytes; the tokens stay memory-mapped.
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
        self._plans: dict[int, EpochPlan] = {}
        # What does not change between epochs, computed once: planning an epoch of a large
        # corpus is then a few random draws per method.
        # Which of signature, docstring, body a method has and whether it is documented for
        # the task, as 4 bits: a method's modes and their weights depend on nothing else.
        self._kinds = np.zeros(len(cache), dtype=np.uint8)
        columns = [TOKEN_FIELDS.index(f) for f in FEATURES]
        for start in range(0, len(cache), _CHUNK):
            rows = slice(start, start + _CHUNK)
            has = cache.lengths[rows][:, columns] > 0
            bits = np.column_stack([has, cache.docstring_task[rows].astype(bool)])
            self._kinds[rows] = (bits * (1 << np.arange(4))).sum(axis=1)
        # The methods that take part at all: every documented one, and the undocumented
        # ones whose key is below the share kept. Left out before any random draw, so a
        # copy of the corpus without them plans the very same epochs.
        self._kept = cache.docstring_task.astype(bool) | (cache.key < examples.undocumented_kept)
        # A method's place among those taking part: what seeds its span masking, the same
        # in such a copy as here.
        self._rank = (np.cumsum(self._kept) - 1).astype(np.int32)
        self._modes: list[Mode] = []  # the modes met so far; a plan stores their index
        self._choices: dict[int, tuple[list[int], np.ndarray | None, bool]] = {}
        # Project memory: each method's neighbours per target, indices into the cache.
        self._neighbors: dict[str, np.ndarray] = (
            {
                target: found[:, : examples.neighbors]
                for target, found in cache.neighbors(examples.neighbors).items()
            }
            if examples.neighbors and stage == "multimode"
            else {}
        )
        self._has_neighbors = {t: (found >= 0).any(axis=1) for t, found in self._neighbors.items()}

    # -- planning

    def plan(self, epoch: int) -> EpochPlan:
        """The epoch's examples and batches, kept for the current epoch."""
        if epoch in self._plans:
            return self._plans[epoch]
        self._plans = {}  # the previous epoch's plan goes first: one is held at a time
        rng = np.random.default_rng(
            [self.batching.seed, self.examples.seed, epoch, STAGES.index(self.stage)]
        )
        if self.stage == "multimode":
            method, mode, style, neighbors = self._draw_translations(rng)
            source_len, target_len = self._translation_lengths(method, mode, style, neighbors)
        else:
            method = np.flatnonzero(self._kept).astype(np.int32)
            mode = np.full(len(method), -1, np.int16)
            style = np.zeros(len(method), np.int8)
            neighbors = np.zeros(len(method), bool)
            source_len, target_len = self._span_lengths(method)
        order, bounds = self._batch(source_len, target_len, rng)
        plan = EpochPlan(
            method,
            mode,
            style,
            source_len,
            target_len,
            neighbors,
            order,
            bounds,
            tuple(self._modes),
        )
        self._plans = {epoch: plan}
        return plan

    def _draw_translations(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each method's draws, in method order: whether it takes part this epoch, its
        mode, its docstring style, whether it reads neighbours. The random draws are those
        of `rng.choice(len(modes), p=weights)` per method, made in the same order whatever
        is cached, so a plan depends only on the seed and the epoch."""
        kept = int(self._kept.sum())
        method = np.zeros(kept, np.int32)
        mode = np.zeros(kept, np.int16)
        style = np.zeros(kept, np.int8)
        neighbors = np.zeros(kept, bool)
        share = self.examples.undocumented_share
        neighbor_share = self.examples.neighbor_share
        reading = bool(self._neighbors)
        count = 0
        for start in range(0, len(self.cache), _CHUNK):
            # Python values, a chunk at a time: a numpy scalar per method is slow.
            rows = slice(start, start + _CHUNK)
            kinds, kept_rows = self._kinds[rows].tolist(), self._kept[rows].tolist()
            styles = self.cache.style[rows].tolist()
            for offset, kind in enumerate(kinds):
                if not kept_rows[offset]:
                    continue
                mode_ids, cdf, documented = self._mode_choices(kind)
                if not documented and share < 1.0 and rng.random() >= share:
                    continue
                if cdf is None:
                    continue
                chosen = mode_ids[int(cdf.searchsorted(rng.random(), side="right"))]
                target = self._modes[chosen].target
                code = 0
                if target == "docstring":
                    ask_summary = rng.random() < self.examples.summary_fraction
                    written = STYLE_CODES[styles[offset]]
                    code = PLANNED_STYLES.index(target_style(written, ask_summary))
                # Drawn only where neighbours are trained with: other plans stay as they were.
                with_neighbors = reading and rng.random() < neighbor_share
                if with_neighbors:
                    found = self._has_neighbors.get(target)
                    with_neighbors = found is not None and bool(found[start + offset])
                method[count], mode[count], style[count] = start + offset, chosen, code
                neighbors[count] = with_neighbors
                count += 1
        return method[:count], mode[:count], style[:count], neighbors[:count]

    def neighbors_of(self, method: int, target: str) -> list[int]:
        """A method's training neighbours for a target, most alike first (none for
        signatures, nor where neighbours are not trained with)."""
        found = self._neighbors.get(target)
        return [] if found is None else [int(i) for i in found[method] if i >= 0]

    def _mode_choices(self, kind: int) -> tuple[list[int], np.ndarray | None, bool]:
        """The modes a kind of method supports (as indices into `_modes`), the cumulative
        distribution to draw one from (None: no mode, or none with weight) and whether it
        has a docstring fit for the task."""
        if kind not in self._choices:
            present = dict(zip(FEATURES, [bool(kind >> i & 1) for i in range(3)], strict=True))
            documented = bool(kind >> 3 & 1)
            modes = available_modes(present, documented)
            weights = np.asarray([self.examples.weight(m) for m in modes])
            cdf = None
            if modes and weights.sum() > 0:
                cdf = (weights / weights.sum()).cumsum()
                cdf /= cdf[-1]
            for mode in modes:
                if mode not in self._modes:
                    self._modes.append(mode)
            self._choices[kind] = ([self._modes.index(m) for m in modes], cdf, documented)
        return self._choices[kind]

    def _translation_lengths(
        self, method: np.ndarray, mode: np.ndarray, style: np.ndarray, neighbors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The examples' source and target lengths, computed without building them, for
        each group of the same mode, style and reading of neighbours at once. Whole-line
        cutting can only shorten, so these are upper bounds; close enough to sort by."""
        source_len = np.zeros(len(method), np.int32)
        target_len = np.zeros(len(method), np.int32)
        groups = (mode.astype(np.int64) * len(PLANNED_STYLES) + style) * 2 + neighbors
        for group in np.unique(groups).tolist():
            chosen = np.flatnonzero(groups == group)
            group_mode = self._modes[group // 2 // len(PLANNED_STYLES)]
            group_style = PLANNED_STYLES[group // 2 % len(PLANNED_STYLES)]
            source, target = self._group_lengths(method[chosen], group_mode, group_style)
            if group % 2:
                source += self._neighbor_lengths(method[chosen], group_mode.target)
            source_len[chosen], target_len[chosen] = source, target
        return source_len, target_len

    def _group_lengths(
        self, method: np.ndarray, mode: Mode, style: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`source_budgets` over many methods of one mode and style at once."""
        lengths = self._field_lengths(method)
        if self.examples.names_follow_signature(mode):
            lengths["signature"] = lengths["signature"] + lengths["names"]
        sources = list(mode.sources)
        context = CONTEXT_FEATURES if self.examples.context else ()
        # A context feature counts (a marker token) only where the method has it.
        present = sum((lengths[f] > 0).astype(np.int64) for f in context) if context else 0
        fixed = len(control_ids(mode, style, self.vocab)) + len(sources) + 1 + present
        kept = _budgeted(lengths, [*sources, *context], self.examples.max_source_tokens - fixed)
        target_field = "summary" if style == "summary" else mode.target
        target = np.minimum(lengths[target_field], self.examples.max_target_tokens - 1) + 1
        return fixed + kept, target

    def _neighbor_lengths(self, method: np.ndarray, target: str) -> np.ndarray:
        """The tokens each method's neighbours take in its source (`neighbor_length`)."""
        total = np.zeros(len(method), np.int64)
        found = self._neighbors[target][method]
        for column in range(found.shape[1]):
            present = found[:, column] >= 0
            lengths = self._field_lengths(found[present, column])
            total[present] += neighbor_length(lengths, target, self.examples)
        return total

    def _span_lengths(self, method: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Span-masking examples' lengths (`span_counts` of what fits), many at once."""
        lengths = self._field_lengths(method)
        names = [*FEATURES, *(CONTEXT_FEATURES if self.examples.context else ())]
        count = sum((lengths[f] > 0).astype(np.int64) for f in names)
        length = count + _budgeted(lengths, names, span_room(self.examples) - count)
        source, target = span_counts(length, self.examples)
        return source.astype(np.int32), target.astype(np.int32)

    def _field_lengths(self, method: np.ndarray) -> dict[str, np.ndarray]:
        lengths = self.cache.lengths[method].astype(np.int64)
        return {name: lengths[:, i] for i, name in enumerate(TOKEN_FIELDS)}

    def _batch(
        self, source: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batches by token budget: the examples of each, one after another, and where
        each batch starts (`EpochPlan.order`, `EpochPlan.bounds`)."""
        order = rng.permutation(len(source))
        mean_cost = float((source.astype(np.int64) + target).mean()) if len(source) else 1.0
        pool = max(int(self.batching.pool_batches * self.batching.max_tokens / mean_cost), 1)
        members: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            # Padding is paid on both sides: group sources of about the same length (bins 10%
            # apart), then sort by target length inside each group, up and down in turn, so a
            # batch that straddles two groups joins examples of similar targets.
            source_bin = np.floor(np.log(source[chunk]) / np.log(1.1)).astype(np.int64)
            snake = np.where(source_bin % 2 == 0, target[chunk], -target[chunk])
            chunk = chunk[np.lexsort((source[chunk], snake, source_bin))]
            chunk_sizes = self._cut(source[chunk].tolist(), target[chunk].tolist())
            members.append(chunk.astype(np.int32))
            sizes.append(np.asarray(chunk_sizes, np.int64))
        flat = np.concatenate(members) if members else np.zeros(0, np.int32)
        size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        # The batches in a random order: batch j of the result is batch shuffled[j].
        shuffled = rng.permutation(len(size))
        starts = np.concatenate([[0], np.cumsum(size)])[:-1]
        bounds = np.concatenate([[0], np.cumsum(size[shuffled])])
        within = np.arange(len(flat)) - np.repeat(bounds[:-1], size[shuffled])
        return flat[np.repeat(starts[shuffled], size[shuffled]) + within], bounds

    def _cut(self, source: list[int], target: list[int]) -> list[int]:
        """The sizes of the batches that examples in this order make, each closed when the
        next example would burst the token budget, or would make the batch more than
        `max_padding` padding (sparse length ranges)."""
        sizes: list[int] = []
        size = longest_source = longest_target = real = 0
        for s_len, t_len in zip(source, target, strict=True):
            s = max(longest_source, s_len)
            t = max(longest_target, t_len)
            padded = (size + 1) * (s + t)
            new_real = real + s_len + t_len
            if size and (
                padded > self.batching.max_tokens
                or new_real < (1 - self.batching.max_padding) * padded
            ):
                sizes.append(size)
                size, s, t, new_real = 0, s_len, t_len, s_len + t_len
            size += 1
            longest_source, longest_target, real = s, t, new_real
        if size:
            sizes.append(size)
        return sizes

    # -- the TrainData protocol

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        """Batches this rank sees in `epoch` (every rank sees the same number)."""
        return self.plan(epoch).num_batches // world_size

    def tokens(self, epoch: int, sample: int = 64) -> int:
        """The real tokens of the epoch's batches, all ranks together. Planned lengths are
        upper bounds (whole-line cutting only shortens: by 5% on the recipe's corpus), so
        they are scaled by what `sample` batches spread over the epoch hold once built (all
        of them, if fewer)."""
        plan = self.plan(epoch)
        lengths, _ = plan.batch_costs()
        chosen = spread_rows(plan.num_batches, sample)
        chosen = range(plan.num_batches) if chosen is None else chosen.tolist()
        built = planned_there = 0
        for index in chosen:
            for i in plan.batch(index).tolist():
                source, target = self.build(plan.example(i), epoch)
                built += len(source) + len(target)
            planned_there += int(lengths[index])
        return round(int(lengths.sum()) * built / planned_there) if planned_there else 0

    def batches(
        self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict]:
        """The epoch's batches for one rank, from batch `start` on (skipping costs nothing)."""
        import torch

        plan = self.plan(epoch)
        usable = plan.num_batches // world_size * world_size
        for position in range(rank + start * world_size, usable, world_size):
            pairs = [self.build(plan.example(i), epoch) for i in plan.batch(position).tolist()]
            yield collate(pairs, self.vocab.pad, torch)

    def build(self, item: Planned, epoch: int) -> tuple[list[int], list[int]]:
        """Build one planned example's (source ids, target ids)."""
        tokens = self.cache.fields(item.method)
        if item.mode is not None:
            # Python ints: cutting at line breaks looks at single ids, which numpy makes slow.
            tokens = {name: ids.tolist() for name, ids in tokens.items()}
            others = self.neighbors_of(item.method, item.mode.target) if item.neighbors else []
            neighbors = [
                {name: ids.tolist() for name, ids in self.cache.fields(other).items()}
                for other in others
            ]
            return build_translation(
                tokens, item.mode, item.style, self.vocab, self.examples, neighbors
            )
        rng = np.random.default_rng([self.examples.seed, epoch, int(self._rank[item.method])])
        return build_span_masking(
            pretraining_ids(tokens, self.vocab, self.examples), self.vocab, self.examples, rng
        )

    def padding_waste(self, epoch: int = 0) -> float:
        """Share of padding among the tokens of the epoch's batches (as planned)."""
        real, padded = self.plan(epoch).batch_costs()
        return 1 - int(real.sum()) / int(padded.sum()) if padded.sum() else 0.0


def _budgeted(lengths: dict[str, np.ndarray], names: list[str], budget) -> np.ndarray:
    """`source_budgets` summed, over arrays: the tokens the features `names` keep together
    when each takes what is left of `budget` in priority order."""
    left = np.broadcast_to(np.asarray(budget, dtype=np.int64), lengths["signature"].shape)
    left = left.copy()
    kept = np.zeros(len(left), np.int64)
    for name in SOURCE_PRIORITY:
        if name in names:
            taken = np.minimum(lengths[name], np.maximum(left, 0))
            left -= taken
            kept += taken
    return kept


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
