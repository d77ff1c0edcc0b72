"""Generation settings and the choice among generated candidates.

What every backend shares (`codemt.backends` generates, `codemt.translate.Translator` asks):
`GenerationSettings` (how to search or sample), `Candidate` (one generated sequence, finished
and checked) and `Translation` (the result for one method), the finishers that turn a raw
sequence into a docstring, body or signature, and `choose_candidate`, which prefers code
that parses and docstrings that mention the function's own names (`name_coverage`).
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from codemt.examples import WORD_PARTS, name_words, signature_names
from codemt.source.docstrings import prose_summary


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate.

    Attributes:
        num_beams: beam width; 1 is greedy decoding. The result is chosen among the beams.
        sample: draw sequences at random (temperature, top-p) instead of searching.
        num_samples: sequences drawn per method when sampling (the result is chosen among
            them).
        temperature, top_p: the sampling distribution.
        max_new_tokens: the longest output, in tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of tokens of this size (0: allow;
            None: by target, `NO_REPEAT_NGRAM`).
        length_penalty: beam search divides log-probabilities by length ** length_penalty.
        real_words: docstrings use only words of the training docstrings or of their source
            (`codemt.words`; torch backend, models that carry a word list).
        name_weight: docstrings: each candidate (beam or sample) is ranked by its score plus
            this times the share of the function's name and parameter words it mentions
            (`name_coverage`; only when the signature is among the sources); 0 ranks by score
            alone. Tuned with length_penalty 1, where scores are mean token log-probabilities.
        neighbor_candidates: summaries written with project memory: the neighbours' own
            summaries (adapted to the method's names where they differ by a word or two)
            are candidates beside the beams, scored by the model (torch backend).
        neighbors: the most project neighbours a model that reads them is given (None:
            as many as it was trained with). The shipped model was trained with up to 3 and
            writes as well with 2, sooner (docs/experiments.md).
        offered_neighbors: docstrings: the summaries of up to this many of the first
            neighbours (the memory's best) are offered beside what the model writes, also
            when it reads fewer or none (`neighbors`: a longer source costs time, another
            candidate little; docs/experiments.md); 0 offers none.
        neighbor_bonus, neighbor_likeness: added to a neighbour summary's score when
            ranking, the second times how alike the neighbour's code is to the method's
            (`codemt.memory.likeness`, 0 to 1): a sentence the project's authors wrote for
            code like this is worth more than the model's score says (how they were
            chosen: docs/experiments.md).
        adapted_bonus: added besides to a summary adapted to the method's names
            (`download_cbs`'s "Downloads CBS videos." offered to `download_sina` as
            "Downloads Sina videos."): a sibling's sentence that already names this method.
        memory_beams: the beam width of a docstring whose neighbours' summaries are offered
            as candidates (None: `num_beams`). They are the alternatives a wider beam
            would find, so a narrower one loses nothing (measured: docs/experiments.md).
        memory_name_weight: `name_weight` for a docstring whose neighbours' summaries are
            offered (None: `name_weight`): among siblings' sentences, the one that names
            what this method's names say is more often the right one.
        least_likeness: a docstring is written with project memory only when the code of
            one of the neighbours it is looked up with is at least this alike to the
            method's (`codemt.memory.likeness`); else alone, as without memory: a sibling
            that does something else lends its sentence to the wrong function
            (docs/experiments.md). 0 always uses them.
        batch_size: methods generated together.
        seed: seeds torch's global RNG before each batch when sampling (None: leave it).
    """

    num_beams: int = 4
    sample: bool = False
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    no_repeat_ngram_size: int | None = None
    length_penalty: float = 1.0
    real_words: bool = True
    name_weight: float = 2.0
    neighbor_candidates: bool = True
    neighbors: int | None = 2
    offered_neighbors: int = 3
    neighbor_bonus: float = 0.0
    neighbor_likeness: float = 6.0
    adapted_bonus: float = 1.0
    memory_beams: int | None = 1
    memory_name_weight: float | None = 6.0
    least_likeness: float = 0.2
    batch_size: int = 16
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_beams", "num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.memory_beams is not None and self.memory_beams < 1:
            raise ValueError(
                f"memory_beams must be at least 1 (None: num_beams), got {self.memory_beams}"
            )
        if self.sample and self.num_beams != 1:
            raise ValueError(
                "sampling draws independent sequences: set num_beams=1 (and num_samples "
                "for several candidates)"
            )
        if not self.sample and self.num_samples != 1:
            raise ValueError("num_samples applies to sampling only: set sample=True")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.offered_neighbors < 0:
            raise ValueError(f"offered_neighbors must be 0 or more, got {self.offered_neighbors}")
        if self.neighbors is not None and self.neighbors < 0:
            raise ValueError(
                f"neighbors must be 0 or more (None: the model's), got {self.neighbors}"
            )
        if not 0 <= self.least_likeness <= 1:
            raise ValueError(f"least_likeness must be in [0, 1], got {self.least_likeness}")
        for name in ("neighbor_bonus", "neighbor_likeness", "adapted_bonus"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("name_weight", "memory_name_weight"):
            weight = getattr(self, name)
            if weight is not None and not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name} must be 0 (off) or more, got {weight}")
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 0:
            raise ValueError(
                f"no_repeat_ngram_size must be 0 (off) or more, got {self.no_repeat_ngram_size}"
            )

    @property
    def candidates(self) -> int:
        """How many sequences one method's generation yields."""
        return self.num_samples if self.sample else self.num_beams

    def with_offered_summaries(self) -> GenerationSettings:
        """These settings for methods whose neighbours' summaries are offered beside what
        the model writes: `memory_beams` wide (unless sampling), names weighed by
        `memory_name_weight`."""
        beside = self
        if not self.sample and self.memory_beams is not None:
            beside = replace(beside, num_beams=self.memory_beams)
        if self.memory_name_weight is not None:
            beside = replace(beside, name_weight=self.memory_name_weight)
        return beside

    def offer_bonus(self, likeness: float, adapted: bool = False) -> float:
        """What a neighbour's summary gets when ranking, for a neighbour whose code is
        `likeness` alike (`codemt.memory.likeness`), `adapted` to the method's names or
        not."""
        bonus = self.neighbor_bonus + self.neighbor_likeness * likeness
        return bonus + self.adapted_bonus if adapted else bonus

    def for_target(self, target: str) -> GenerationSettings:
        """These settings with the target's own `no_repeat_ngram_size` where none is set."""
        if self.no_repeat_ngram_size is not None:
            return self
        return replace(self, no_repeat_ngram_size=NO_REPEAT_NGRAM[target])


# Docstrings never repeat 4 tokens, so a small model's "the total number of the total number
# of ..." goes (measured in docs/default-model.md). Code repeats itself by nature (`self.x = x`
# lines), so it may.
NO_REPEAT_NGRAM = {"docstring": 4, "body": 0, "signature": 0}


@dataclass(frozen=True)
class Candidate:
    """One generated sequence, post-processed: its text, score and whether it parses."""

    text: str
    score: float  # the model's log-probability per token (beam search: its beam score)
    parsed: bool | None  # None for docstrings
    coverage: float = 0.0  # docstrings: the share of the method's name words it mentions
    bonus: float = 0.0  # added when ranking: a neighbour's summary gets `offer_bonus`


@dataclass(frozen=True)
class Translation:
    """The result for one method.

    `parsed` (code targets) says whether `text` parses after the signature, that is whether
    any candidate did; `candidates` (code targets) holds every candidate, best-scored first.
    `origin` (docstrings written with project memory): whose summary `text` is (or, in a
    sectioned style, its summary), as written there or adapted to this function's names:
    "the summary of read_orders (orders.py:30), its names adapted"
    (`codemt.translate.origin_of`); "" when the model wrote it. A sibling's sentence is
    right where the sibling does what this function does and confidently wrong where it
    does not: the one to check.
    """

    text: str
    score: float
    parsed: bool | None = None
    candidates: list[Candidate] = field(default_factory=list)
    origin: str = ""


def borrowed_note(name: str, origin: str) -> str:
    """What the user is told of function `name`'s docstring when it is a sibling's summary
    (`Translation.origin`): the one to check first."""
    return f"{name}: {origin}; check that it says what {name.rsplit('.', 1)[-1]} does"


# ------------------------------------------------------------------ post-processing


def finish_docstring(text: str) -> str:
    """A generated docstring without quotes, dedented as `inspect.cleandoc` does, with
    "a"/"an" agreeing with the word after them and its summary ending in a period."""
    text = text.strip()
    for quote in ('"""', "'''"):
        if text.startswith(quote):
            text = text[3:]
            text = text[:-3] if text.endswith(quote) else text
            break

    text = fix_articles(inspect.cleandoc(text))
    summary, rest = (text.split("\n\n", 1) + [""])[:2]
    if prose_summary(summary) and re.search(r"[A-Za-z0-9)\]'`\"]$", summary):
        summary += "."
    return f"{summary}\n\n{rest}" if rest else summary


# Words whose first letter does not say how they sound: "a user", "an hour".
_SOUNDS_CONSONANT = re.compile(r"(?:uni|use|usu|uti|ura|uri|url|utf|eu|one\b|once)", re.I)
_SOUNDS_VOWEL = re.compile(r"(?:hour|honest|honou?r|heir)", re.I)
_NOT_NOUNS = frozenset(
    [
        "and",
        "or",
        "of",
        "to",
        "in",
        "is",
        "if",
        "at",
        "as",
        "on",
        "by",
        "for",
        "with",
        "from",
        "into",
        "are",
        "was",
        "be",
        "it",
        "not",
        "nor",
        "but",
        "so",
        "than",
        "then",
        "that",
        "the",
        "a",
        "an",
    ]
)
# Letters whose names start with a vowel sound: "an HTTP", "an SQL", "a URL".
_VOWEL_LETTERS = frozenset("AEFHILMNORSX")


def fix_articles(text: str) -> str:
    """ "a"/"an" chosen by how the next word sounds ("an init", "a naturalsize", "an
    HTTP request"), outside `code` spans."""

    def agree(match: re.Match[str]) -> str:
        article, space, word = match.group(1), match.group(2), match.group(3)
        if word.lower() in _NOT_NOUNS:  # "add a and b": `a` is a name, not an article
            return match.group(0)
        if word.isupper() and len(word) > 1:
            vowel = word[0] in _VOWEL_LETTERS
        elif _SOUNDS_CONSONANT.match(word):
            vowel = False
        elif _SOUNDS_VOWEL.match(word):
            vowel = True
        else:
            vowel = word[0].lower() in "aeiou"
        chosen = "an" if vowel else "a"
        return (chosen.capitalize() if article[0].isupper() else chosen) + space + word

    parts = re.split(r"(`[^`]*`)", text)
    pattern = re.compile(r"\b([Aa]n?)(\s+)([A-Za-z][\w]*)")
    return "".join(p if p.startswith("`") else pattern.sub(agree, p) for p in parts)


def finish_body(text: str) -> str:
    """A generated body indented by four spaces, without blank lines around it.

    The model's targets are indented already; only text that is not (a first line without
    four spaces of indentation) is dedented and re-indented.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    body = "\n".join(lines).rstrip()
    if re.match(r" {4}\S", body):
        return body
    return textwrap.indent(textwrap.dedent(body), "    ")


def finish_signature(text: str) -> str:
    """A generated signature as one stripped line."""
    return " ".join(line.strip() for line in text.strip().split("\n"))


FINISHERS: dict[str, Callable[[str], str]] = {
    "docstring": finish_docstring,
    "body": finish_body,
    "signature": finish_signature,
}


def parses(signature: str, body: str) -> bool:
    """Whether a signature and a body make a function that `ast.parse` accepts."""
    try:
        with warnings.catch_warnings():  # generated code's `1if`, "\d": not the user's to see
            warnings.simplefilter("ignore", SyntaxWarning)
            ast.parse(f"{signature}\n{body or '    pass'}\n")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def code_parses(record: dict[str, Any], target: str, text: str) -> bool | None:
    """Whether generated code parses with the rest of its method (None for docstrings)."""
    if target == "body":
        # An empty body is no body; a method translated from its docstring alone has no
        # signature to try the body with, so a stand-in is used.
        return bool(text.strip()) and parses(record["signature"] or "def _():", text)
    if target == "signature":
        return parses(text, record["body"])
    return None


def choose_candidate(candidates: Sequence[Candidate], name_weight: float = 0.0) -> Candidate:
    """The best-scored candidate that parses, else the best-scored one; scores count
    `name_weight` times each candidate's name coverage (docstrings) and its bonus besides."""
    return max(
        candidates,
        key=lambda c: (c.parsed is True, c.score + name_weight * c.coverage + c.bonus),
    )


def could_win(
    text: str,
    bonus: float,
    words: set[str],
    generated: Sequence[Candidate],
    settings: GenerationSettings,
) -> bool:
    """Whether `choose_candidate` could choose a neighbour's summary `text` (with its
    `bonus`) over the `generated` docstrings, were its score the highest a score can be
    (0: every token certain), so that a summary that could not is never scored."""
    best = max((c.score + settings.name_weight * c.coverage for c in generated), default=-math.inf)
    reach = settings.name_weight * name_coverage(words, text) + bonus
    return reach >= best


_NAME_PARTS = re.compile(r"[a-z]+|\d+")  # of `signature_names`' lower-case words
_PLURAL_ES = re.compile(r"(?:ss|x|ch|sh)es$")
# Names that docstrings hardly ever spell out.
_UNSAID_NAMES = frozenset({"args", "kwargs"})


def _stem(word: str) -> str:
    """`paths` -> `path`, `matches` -> `match`, `class` and `classes` -> `class`."""
    if _PLURAL_ES.search(word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def method_name_words(record: dict[str, Any]) -> set[str]:
    """The words of a method's name and parameter names (`signature_names`), in stem form;
    one-letter names, `args` and `kwargs` say nothing and are left out."""
    names = signature_names(record.get("signature") or "") or name_words(record.get("name", ""))
    words = _NAME_PARTS.findall(names.lower())
    return {_stem(w) for w in words if len(w) > 1 and w not in _UNSAID_NAMES}


def name_coverage(words: set[str], text: str) -> float:
    """The share of `words` (from `method_name_words`) that `text` mentions, camel-case
    and snake_case identifiers split into their words, regular plurals counted (0 for no
    words).

    A docstring that names what the function's own names say is more often the right one:
    among the beams of the recipe's model, preferring it raises ROUGE-L on held-out
    docstrings (docs/evaluation.md).
    """
    if not words:
        return 0.0
    said = {_stem(w.lower()) for w in WORD_PARTS.findall(text)}
    return len(words & said) / len(words)
