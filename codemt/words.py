"""Docstrings in real words: a decoding constraint against words made of stray sub-words.

A small model writes a docstring one byte-level BPE piece at a time, and the copy
mechanism (`codemt.pointer`) can copy any single piece of its source. Together they make
words nobody wrote: "rest" + "ount" (from `amount`) gives "restount", "cer" + "ature"
gives "cerature". Those are the worst faults a reader sees, and no n-gram of a reference
ever matches them.

The constraint lets a docstring use only words that the training docstrings used (at
least `MIN_COUNT` times) or that its own source holds (identifiers also split at `_` and
camel case: `low_stock` and `lowStock` give "low" and "stock"). A word is a run of ASCII
letters, compared in lower case; digits, `_`, punctuation and anything else end it. At
each step a token may extend the word being written only to a prefix of an allowed word,
and may end it (with a space, punctuation or </s>) only where it is a whole allowed word.
Byte-level BPE has every single letter as a token, so an allowed prefix can always be
completed.

Special tokens other than </s> are never allowed: no docstring holds a control code.

The word list is written beside the tokenizer when a model is trained (`WORDS_FILE`, one
word a line), so every checkpoint carries it; a model without one is not constrained.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from codemt.corpus import iter_records
from codemt.examples import name_words

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

WORDS_FILE = "words.txt"
MIN_COUNT = 2  # a word used once is as often a typo as a word
_LETTERS = re.compile(r"[A-Za-z]+")
_WORD = re.compile(r"[a-z]+")
_CACHED_STATES = 20_000  # per-word masks kept before the cache starts over


def docstring_words(docstrings: Iterable[str], min_count: int = MIN_COUNT) -> list[str]:
    """The words (lower-case letter runs) used at least `min_count` times, sorted."""
    counts = Counter(w.lower() for text in docstrings for w in _LETTERS.findall(text))
    return sorted(w for w, n in counts.items() if n >= min_count)


def corpus_words(corpus: Path, split: str = "train") -> list[str]:
    """`docstring_words` of the docstrings of one split of a corpus from `codemt mine`."""
    return docstring_words(r["docstring"] for r in iter_records(corpus, split, ["docstring"]))


def write_words(words: Iterable[str], folder: Path) -> Path:
    """Write the word list into `folder` (atomically); return its path."""
    path = Path(folder) / WORDS_FILE
    tmp = path.with_name(f".{WORDS_FILE}.tmp")
    tmp.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    tmp.replace(path)
    return path


def read_words(folder: Path) -> frozenset[str] | None:
    """The word list in a model folder, or None when it has none (or an empty one)."""
    path = Path(folder) / WORDS_FILE
    if not path.is_file():
        return None
    words = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        word = line.strip()
        if word and not _WORD.fullmatch(word):
            raise ValueError(
                f"{path}:{number}: {word!r} is not a lower-case ASCII word; the list holds "
                f"one a line (rewrite it with codemt.words.write_words, or delete it to "
                f"generate docstrings unconstrained)"
            )
        words.add(word)
    words.discard("")
    return frozenset(words) or None


def source_words(text: str) -> set[str]:
    """The words a source offers: every letter run, and the parts of camel-case ones."""
    words = set()
    for run in _LETTERS.findall(text):
        words.add(run.lower())
        words.update(name_words(run).split())
    return words


def _prefixes(words: Iterable[str]) -> set[str]:
    return {w[:i] for w in words for i in range(1, len(w) + 1)}


class _Piece:
    """How one token's text splits into letter runs, lower-cased.

    `whole`: the text is letters only (it continues the word being written without ending
    it). Otherwise `lead` is the run at its very start (which finishes the word being
    written), `inner` the runs it holds whole, and `tail` the run at its very end (a new
    word it starts).
    """

    __slots__ = ("inner", "lead", "tail", "text", "whole")

    def __init__(self, text: str) -> None:
        self.text = text.lower()
        self.whole = bool(text) and _LETTERS.fullmatch(text) is not None
        runs = list(_LETTERS.finditer(self.text))
        starts = bool(runs) and runs[0].start() == 0
        ends = bool(runs) and runs[-1].end() == len(self.text)
        self.lead = runs[0].group() if starts and not self.whole else ""
        self.tail = runs[-1].group() if ends and not self.whole else ""
        self.inner = [m.group() for m in runs[int(starts) : len(runs) - int(ends)]]


class WordConstraint:
    """Which tokens keep a docstring in allowed words, for one model's vocabulary.

    Built once per model (the token analysis and the word list's prefixes take a fraction
    of a second); `processor(...)` makes the transformers logits processor of one batch.
    """

    def __init__(self, tokenizer: Tokenizer, words: Iterable[str], end: int) -> None:
        import torch

        self.size = tokenizer.get_vocab_size()
        self.pieces = [
            _Piece(tokenizer.decode([i], skip_special_tokens=True)) for i in range(self.size)
        ]
        self.words = frozenset(words)
        self.prefixes = frozenset(_prefixes(self.words))
        # Special tokens other than `end` (</s>) are never allowed: no docstring holds a
        # control code, and decoded without them the words around one would join. The
        # other tokens by the text that may extend a word (letters only) and by their lead
        # (</s>: "", as any token that ends a word without adding letters to it).
        self.by_text: dict[str, list[int]] = {}
        self.by_lead: dict[str, list[int]] = {}
        for i, piece in enumerate(self.pieces):
            if not piece.text and i != end:
                continue
            if piece.whole:
                self.by_text.setdefault(piece.text, []).append(i)
            else:
                self.by_lead.setdefault(piece.lead, []).append(i)
        # What a token needs whatever the word being written: its inner runs whole words,
        # its tail a prefix of one.
        self.inside_ok = torch.tensor(
            [self._inside_ok(p, self.words, self.prefixes) for p in self.pieces]
        )
        # The tokens `inside_ok` refuses, by each word or tail that they lack: a source's
        # own words can only admit the tokens filed under one of them.
        self._refused_by: dict[str, list[int]] = {}
        for i in (~self.inside_ok).nonzero().flatten().tolist():
            inner, tail = self._lacking(self.pieces[i])
            for lacking in {*inner, tail} - {""}:
                self._refused_by.setdefault(lacking, []).append(i)
        self._sorted_words = sorted(self.words)
        self._states: dict[str, torch.Tensor] = {}

    def _lacking(self, piece: _Piece) -> tuple[set[str], str]:
        """The inner runs of `piece` that are no listed word, and its tail where it begins
        no listed word ("" where it does, or it has none)."""
        inner = {w for w in piece.inner if w not in self.words}
        tail = piece.tail if piece.tail and piece.tail not in self.prefixes else ""
        return inner, tail

    @staticmethod
    def _inside_ok(piece: _Piece, words: frozenset[str], prefixes: frozenset[str]) -> bool:
        return all(w in words for w in piece.inner) and (not piece.tail or piece.tail in prefixes)

    def _after(self, word: str) -> list[int]:
        """The tokens that may follow the word being written, `word` ("" between words),
        by the list: the letter pieces keeping it a prefix, and the other tokens where it
        (extended by their lead) is a whole word."""
        # The listed words that begin with `word` give every text that keeps it a prefix
        # and every lead that finishes it; when they are few, reading them beats trying
        # each token's text (the words are sorted lower-case letters, "{" follows "z").
        first = bisect_left(self._sorted_words, word)
        last = bisect_left(self._sorted_words, word + "{", first)
        if word and (last - first) * 8 < len(self.by_text):
            allowed = []
            texts = set()
            for listed in self._sorted_words[first:last]:
                rest = listed[len(word) :]
                texts.update(rest[:end] for end in range(1, len(rest) + 1))
                allowed.extend(self.by_lead.get(rest, ()))
            allowed.extend(i for text in texts for i in self.by_text.get(text, ()))
            return allowed
        allowed = [
            i for text, ids in self.by_text.items() if word + text in self.prefixes for i in ids
        ]
        for lead, ids in self.by_lead.items():
            finished = word + lead
            if not finished or finished in self.words:
                allowed.extend(ids)
        return allowed

    def _state_mask(self, word: str) -> torch.Tensor:
        """(vocab,) bool: the tokens the word list alone allows after `word`."""
        mask = self._states.get(word)
        if mask is None:
            if len(self._states) >= _CACHED_STATES:
                self._states.clear()
            mask = _mask_of(self._after(word), self.size)
            self._states[word] = mask
        return mask

    def _source_allows(self, word: str, own: set[str]) -> list[int]:
        """The tokens that the source's own words allow after `word` (the list's aside)."""
        allowed = []
        for w in own:
            if not w.startswith(word) or w in self.words:
                continue
            rest = w[len(word) :]
            for end in range(1, len(rest) + 1):
                allowed.extend(self.by_text.get(rest[:end], ()))
            allowed.extend(self.by_lead.get(rest, ()))
        return allowed

    def writing(self, ids: list[int]) -> str:
        """The word being written at the end of generated `ids` ("" between words)."""
        word = ""
        for i in reversed(ids):
            piece = self.pieces[i]
            if not piece.whole:
                return piece.tail + word
            word = piece.text + word
        return word

    def inside_allowed(self, own: set[str]) -> torch.Tensor:
        """(vocab,) bool: `inside_ok` with the source's words `own` allowed too."""
        if not own:
            return self.inside_ok
        own_prefixes = _prefixes(own)
        candidates = {i for key in own_prefixes for i in self._refused_by.get(key, ())}
        admitted = []
        for i in candidates:
            inner, tail = self._lacking(self.pieces[i])
            if inner <= own and (not tail or tail in own_prefixes):
                admitted.append(i)
        if not admitted:
            return self.inside_ok
        mask = self.inside_ok | _mask_of(admitted, self.size)
        return mask

    def allowed(self, ids: list[int], own: set[str], inside: torch.Tensor) -> torch.Tensor:
        """(vocab,) bool: the tokens that may follow `ids`, given the source's words `own`
        and `inside = inside_allowed(own)`."""
        return self.allowed_after(self.writing(ids), own, inside)

    def allowed_after(self, word: str, own: set[str], inside: torch.Tensor) -> torch.Tensor:
        """(vocab,) bool: the tokens that may follow the word being written, `word`, as in
        `allowed`."""
        mask = self._state_mask(word)
        extra = self._source_allows(word, own)
        if extra:
            mask = mask | _mask_of(extra, self.size)
        return mask & inside

    def processor(self, sources: list[str]) -> WordsProcessor:
        """The logits processor for a batch whose sources have these texts."""
        return WordsProcessor(self, [source_words(text) for text in sources])


def _mask_of(ids: list[int], size: int) -> torch.Tensor:
    """(size,) bool: True at `ids`. Set through numpy: indexing a tensor with a Python list
    of thousands of ids costs several times as much, at every new word of every beam."""
    import numpy as np
    import torch

    allowed = np.zeros(size, dtype=bool)
    allowed[ids] = True
    return torch.from_numpy(allowed)


class WordsProcessor:
    """A transformers logits processor: -inf for the tokens `WordConstraint` forbids.

    Rows are the batch's sources in order, each repeated for its beams or samples.
    """

    def __init__(self, constraint: WordConstraint, own: list[set[str]]) -> None:
        self.constraint = constraint
        self.own = own
        self.inside = [constraint.inside_allowed(words) for words in own]
        # (source, word being written) -> mask: a source's beams and steps are often
        # between words or in the same one, and a long source has many words to try.
        self._masks: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        per_source = input_ids.size(0) // len(self.own)
        history = input_ids[:, 1:].tolist()  # without the decoder start token
        allowed = []
        for r, ids in enumerate(history):
            key = (r // per_source, self.constraint.writing(ids))
            mask = self._masks.get(key)
            if mask is None:
                if len(self._masks) >= _CACHED_STATES:
                    self._masks.clear()
                source = key[0]
                mask = self.constraint.allowed_after(key[1], self.own[source], self.inside[source])
                self._masks[key] = mask
            allowed.append(mask)
        return scores.masked_fill(~torch.stack(allowed).to(scores.device), -float("inf"))
