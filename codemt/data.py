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
from typing import TYPE_CHECKING

import numpy as np

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
    neighbor_length,
    pretraining_ids,
    source_budgets,
    span_counts,
    target_style,
)
from codemt.token_cache import STYLE_CODES, TokenCache, spread_rows

if TYPE_CHECKING:
    pass

STAGES = ("pretrain", "multimode")


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
            style = target_style(STYLE_CODES[self.cache.style[method]], ask_summary)
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
