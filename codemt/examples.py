"""Training examples: PyMT5's two objectives, built from a method's features.

Multi-mode translation: a method is split into features {signature, docstring, body}
(and, optionally, context features {class, decorators, imports} usable as extra
sources). An example translates a non-overlapping set of source features into one
target feature; a control code says which feature to produce and, for docstrings, in
which style. The source is readable text, each feature after its marker token, in a
fixed order; `codemt examples` prints it.

Span masking (T5): random spans of a method's tokens are replaced by numbered sentinels;
the target lists each sentinel followed by the tokens it replaced.
"""

from __future__ import annotations

import ast
import itertools
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from codemt.source.docstrings import summary_of
from codemt.tokenizer import (
    EOS_TOKEN,
    FEATURE_TOKENS,
    NUM_SENTINELS,
    PAD_TOKEN,
    SENTINEL_TOKENS,
    STYLE_TOKENS,
    TARGET_TOKENS,
    special_token_id,
)

FEATURES = ("signature", "docstring", "body")
CONTEXT_FEATURES = ("imports", "class", "decorators")
# The order features appear in a source, as they appear in a file.
SOURCE_ORDER = ("imports", "class", "decorators", "signature", "docstring", "body")
# Which features keep their tokens first when a source is too long.
SOURCE_PRIORITY = ("signature", "docstring", "body", "decorators", "class", "imports")
# Cached token streams per method: the features, plus the docstring's first paragraph,
# which is the target of the summary style, and the words of the signature's names.
TOKEN_FIELDS = (
    "signature", "docstring", "body", "summary", "class", "decorators", "imports", "names",
)  # fmt: skip
DOCSTRING_STYLES = ("summary", "google", "numpy", "rest", "author")


@dataclass(frozen=True, order=True)
class Mode:
    """One translation direction: source features -> target feature."""

    sources: tuple[str, ...]
    target: str

    @property
    def name(self) -> str:
        """`signature+body->docstring`: how modes are named in settings and reports."""
        return f"{'+'.join(self.sources)}->{self.target}"

    @classmethod
    def parse(cls, name: str) -> Mode:
        """Read a mode name such as `signature+body->docstring`."""
        try:
            sources, target = name.split("->")
        except ValueError:
            raise ValueError(
                f"mode {name!r}: expected SOURCES->TARGET, e.g. signature+body->docstring"
            ) from None
        parts = tuple(s.strip() for s in sources.split("+") if s.strip())
        unknown = [p for p in (*parts, target) if p not in FEATURES]
        if unknown or not parts or target in parts:
            raise ValueError(
                f"mode {name!r}: sources and target must be distinct features among {', '.join(FEATURES)}"
            )
        return cls(tuple(f for f in FEATURES if f in parts), target.strip())


def all_modes(features: Sequence[str] = FEATURES) -> list[Mode]:
    """Every (non-empty set of other features) -> (one feature) pair, as the paper trains."""
    modes = []
    for target in features:
        others = [f for f in features if f != target]
        for size in range(1, len(others) + 1):
            modes.extend(Mode(combo, target) for combo in itertools.combinations(others, size))
    return sorted(modes)


DEFAULT_MODE_WEIGHTS = {
    # The two headline tasks of the paper and of CodeXGLUE get more of the budget.
    "signature+body->docstring": 3.0,
    "signature+docstring->body": 3.0,
}


@dataclass(frozen=True)
class ExampleSettings:
    """How methods become examples; part of the token cache's and the checkpoint's identity."""

    max_source_tokens: int = 512
    max_target_tokens: int = 256
    context: bool = False  # add class, decorators and imports as extra sources
    mode_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MODE_WEIGHTS))
    summary_fraction: float = 0.5  # of docstring targets, the share asked for as a summary
    # Of the methods without a docstring fit for the docstring task, the share drawn into
    # each multi-mode epoch (afresh every epoch): below 1, the docstring task gets more of
    # the training tokens. Most mined methods have no docstring.
    undocumented_share: float = 1.0
    # Of those methods, the share that takes part in training at all (pre-training too): a
    # fixed set, the methods whose key (`codemt.token_cache.method_keys`, a hash of signature and
    # body) is below it. `undocumented_share` is then drawn from this set. The others can
    # be left out of a copy of the corpus made to train elsewhere
    # (`codemt.recipe.corpus.copy_for_training`): the copy makes the very same examples.
    undocumented_kept: float = 1.0
    # Follow a source signature with its names as words, `# save act (path)`: summaries
    # reuse those words, spelled as prose tokens (` path`), not as identifier pieces
    # (`_path`), so the model can copy them instead of learning to respell each one.
    name_words: bool = False
    # Project memory (`codemt.memory`): up to this many documented functions of the same
    # repository follow the source, each as the docstring marker, its summary and its name
    # words (for body targets also the body marker and its first lines), at most
    # `neighbor_tokens` tokens each (twice that for body targets), after the method's own
    # features, which keep `max_source_tokens`. 0: no neighbours ever.
    neighbors: int = 0
    # Of the translation examples, the share given neighbours (where the method has any),
    # so that a model trained with them still works alone.
    neighbor_share: float = 0.7
    neighbor_tokens: int = 48
    noise_density: float = 0.15
    mean_noise_span: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_source_tokens < 16 or self.max_target_tokens < 8:
            raise ValueError("max_source_tokens must be >= 16 and max_target_tokens >= 8")
        for name, weight in self.mode_weights.items():
            Mode.parse(name)
            if weight < 0:
                raise ValueError(f"mode weight of {name!r} must not be negative, got {weight}")
        if not 0.0 <= self.summary_fraction <= 1.0:
            raise ValueError(f"summary_fraction must be in [0, 1], got {self.summary_fraction}")
        if not 0.0 <= self.undocumented_share <= 1.0:
            raise ValueError(f"undocumented_share must be in [0, 1], got {self.undocumented_share}")
        if not 0.0 <= self.undocumented_kept <= 1.0:
            raise ValueError(f"undocumented_kept must be in [0, 1], got {self.undocumented_kept}")
        if self.neighbors < 0 or self.neighbor_tokens < 8:
            raise ValueError("neighbors must be >= 0 and neighbor_tokens >= 8")
        if not 0.0 <= self.neighbor_share <= 1.0:
            raise ValueError(f"neighbor_share must be in [0, 1], got {self.neighbor_share}")
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"noise_density must be in (0, 1), got {self.noise_density}")
        if self.mean_noise_span < 1.0:
            raise ValueError(f"mean_noise_span must be at least 1, got {self.mean_noise_span}")

    def weight(self, mode: Mode) -> float:
        """The sampling weight of a mode (1 unless set)."""
        return float(self.mode_weights.get(mode.name, 1.0))

    def names_follow_signature(self, mode: Mode) -> bool:
        """Whether a source of `mode` has the signature's name words after the signature."""
        return self.name_words and "signature" in mode.sources


# ------------------------------------------------------------------ feature texts


# The words of an identifier: camel-case humps, lower-case runs, numbers (`_` splits too).
WORD_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> str:
    """A function's name as lower-case words: `Cls.getHTTPResponse_code` -> `get http response code`."""
    words = WORD_PARTS.findall(name.rsplit(".", 1)[-1])
    return " ".join(words).lower()


DEF_NAME = re.compile(r"\bdef\s+(\w+)")


def signature_names(signature: str) -> str:
    """The signature's function and parameter names as words, after a line break and `#`.

    `def getResponse(self, status_code=200):` -> `\\n# get response (status code)`;
    "" when the signature names no function.
    """
    try:
        tree = ast.parse(textwrap.dedent(signature).strip() + "\n    ...")
        function = tree.body[0]
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            return ""
        name, arguments = function.name, function.args
        parameters = [
            a.arg
            for a in (*arguments.posonlyargs, *arguments.args, arguments.vararg,
                      *arguments.kwonlyargs, arguments.kwarg)
            if a is not None and a.arg not in ("self", "cls")
        ]  # fmt: skip
    except (SyntaxError, IndexError, ValueError, RecursionError, MemoryError):
        match = DEF_NAME.search(signature)
        if not match:
            return ""
        name, parameters = match.group(1), []
    words = [w for w in (name_words(p) for p in parameters) if w]
    line = " ".join([name_words(name)] + ([f"({', '.join(words)})"] if words else [])).strip()
    return f"\n# {line}" if line else ""


def feature_texts(record: dict) -> dict[str, str]:
    """The text of each token field of a method record ("" where it has none)."""
    class_text = ""
    if record.get("class_name"):
        bases = record.get("class_bases") or []
        class_text = (
            f"class {record['class_name']}" + (f"({', '.join(bases)})" if bases else "") + ":"
        )
        if record.get("class_docstring"):
            class_text += f'\n    """{summary_of(record["class_docstring"])}"""'
    docstring = record.get("docstring") or ""
    return {
        "signature": record["signature"],
        "docstring": docstring,
        "body": record.get("body") or "",
        "summary": summary_of(docstring) if docstring else "",
        "class": class_text,
        "decorators": "\n".join(f"@{d}" for d in record.get("decorators") or []),
        "imports": "\n".join(record.get("imports") or []),
        "names": signature_names(record["signature"]),
    }


def target_style(docstring_style: str, ask_summary: bool) -> str:
    """The style code for a docstring target, and so which text is the target.

    `summary` targets the first paragraph; google/numpy/rest the whole docstring in that
    style; `author` the whole docstring of any other shape, as its author wrote it.
    """
    if ask_summary or docstring_style in ("summary", ""):
        return "summary"
    return docstring_style if docstring_style in ("google", "numpy", "rest") else "author"


def available_modes(has: dict[str, bool], docstring_task: bool) -> list[Mode]:
    """The modes a method supports: its non-empty features, docstring targets only if eligible."""
    present = [f for f in FEATURES if has[f]]
    return [m for m in all_modes(present) if m.target != "docstring" or docstring_task]


# ------------------------------------------------------------------ truncation


def cut_at_line(ids: Sequence[int], budget: int, newline_ids: frozenset[int]) -> list[int]:
    """The longest prefix of `ids` within `budget` that ends before a line break.

    Falls back to a hard cut when the first line alone is over budget.
    """
    if len(ids) <= budget:
        return list(ids)
    for end in range(budget, 0, -1):
        if ids[end] in newline_ids:
            return list(ids[:end])
    return list(ids[:budget])


def source_budgets(lengths: dict[str, int], budget: int) -> dict[str, int]:
    """Tokens each source feature keeps when the source is over `budget`, by priority."""
    kept = {}
    for name in SOURCE_PRIORITY:
        if name in lengths:
            kept[name] = min(lengths[name], max(budget, 0))
            budget -= kept[name]
    return kept


@dataclass(frozen=True)
class Vocabulary:
    """The ids of the special tokens and line breaks that example building needs."""

    eos: int
    pad: int
    features: dict[str, int]
    targets: dict[str, int]
    styles: dict[str, int]
    sentinels: tuple[int, ...]
    newline_ids: frozenset[int]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> Vocabulary:
        """Look the ids up in a `tokenizers.Tokenizer` built by `codemt.tokenizer`."""

        def ids(mapping: dict[str, str]) -> dict[str, int]:
            return {name: special_token_id(tokenizer, token) for name, token in mapping.items()}

        newline_ids = frozenset(
            i
            for i in range(tokenizer.get_vocab_size())
            if "\n" in tokenizer.decode([i], skip_special_tokens=False)
        )
        return cls(
            eos=special_token_id(tokenizer, EOS_TOKEN),
            pad=special_token_id(tokenizer, PAD_TOKEN),
            features=ids(FEATURE_TOKENS),
            targets=ids(TARGET_TOKENS),
            styles=ids(STYLE_TOKENS),
            sentinels=tuple(special_token_id(tokenizer, t) for t in SENTINEL_TOKENS),
            newline_ids=newline_ids,
        )


def control_ids(mode: Mode, style: str | None, vocab: Vocabulary) -> list[int]:
    """The control code that starts a source: the target, and for docstrings the style."""
    ids = [vocab.targets[mode.target]]
    if mode.target == "docstring":
        ids.append(vocab.styles[style or "summary"])
    return ids


def neighbor_budget(target: str, settings: ExampleSettings) -> int:
    """The tokens one neighbour may take in a source for `target`."""
    return settings.neighbor_tokens * (2 if target == "body" else 1)


def neighbor_length(lengths: dict, target: str, settings: ExampleSettings) -> np.ndarray:
    """How many tokens a neighbour with these field lengths takes (`neighbor_ids`); the
    lengths may be numbers or arrays (one neighbour each), and so is what it returns."""
    length = 1 + np.asarray(lengths["summary"]) + lengths["names"]
    if target == "body":
        body = np.asarray(lengths["body"])
        length = length + np.where(body > 0, 1 + body, 0)
    return np.minimum(length, neighbor_budget(target, settings))


def neighbor_ids(
    tokens: dict[str, Sequence[int]], target: str, vocab: Vocabulary, settings: ExampleSettings
) -> list[int]:
    """One neighbour as the model reads it: the docstring marker, its summary and its name
    words (`# load config (path)`), for body targets the body marker and its first lines;
    cut to `neighbor_budget`, so the summary is what stays."""
    ids = [vocab.features["docstring"], *tokens["summary"], *tokens["names"]]
    if target == "body" and len(tokens["body"]):
        ids += [vocab.features["body"], *tokens["body"]]
    return ids[: neighbor_budget(target, settings)]


def build_translation(
    tokens: dict[str, Sequence[int]],
    mode: Mode,
    style: str | None,
    vocab: Vocabulary,
    settings: ExampleSettings,
    neighbors: Sequence[dict[str, Sequence[int]]] = (),
) -> tuple[list[int], list[int]]:
    """Source and target ids of one multi-mode example.

    `tokens` maps token fields to ids. The control code is never cut; source features
    are cut by priority (signature first kept, context last), each keeping whole lines;
    the target keeps whole lines too and ends with </s>. `neighbors` (token fields of
    other documented functions, most alike first; at most `settings.neighbors` are read)
    follow the method's own features.
    """
    sources = list(mode.sources)
    if settings.context:
        sources += [f for f in CONTEXT_FEATURES if len(tokens.get(f, ()))]
    if settings.names_follow_signature(mode):
        tokens = {**tokens, "signature": [*tokens["signature"], *tokens["names"]]}
    control = control_ids(mode, style, vocab)
    fixed = len(control) + len(sources) + 1  # control code, one marker per feature, </s>
    budgets = source_budgets(
        {f: len(tokens[f]) for f in sources}, settings.max_source_tokens - fixed
    )
    source = list(control)
    for name in SOURCE_ORDER:
        if name in budgets:
            source.append(vocab.features[name])
            source.extend(cut_at_line(tokens[name], budgets[name], vocab.newline_ids))
    for neighbor in neighbors[: settings.neighbors]:
        source.extend(neighbor_ids(neighbor, mode.target, vocab, settings))
    source.append(vocab.eos)
    target_field = "summary" if mode.target == "docstring" and style == "summary" else mode.target
    target = cut_at_line(tokens[target_field], settings.max_target_tokens - 1, vocab.newline_ids)
    return source, target + [vocab.eos]


# ------------------------------------------------------------------ span masking


def _random_segmentation(total: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split `total` items into `segments` non-empty runs of random lengths."""
    cuts = np.zeros(total - 1, dtype=bool)
    cuts[: segments - 1] = True
    rng.shuffle(cuts)
    starts = np.concatenate([[True], cuts])
    return np.bincount(np.cumsum(starts) - 1, minlength=segments)


def noise_mask(
    length: int, density: float, mean_span: float, rng: np.random.Generator
) -> np.ndarray:
    """T5's random span noise: a boolean mask over `length` tokens, spans of mean `mean_span`.

    About `density` of the tokens are noise, in alternating runs of kept and noise tokens
    that start with a kept run; at most `NUM_SENTINELS` noise spans.
    """
    if length < 2:
        return np.zeros(length, dtype=bool)
    noise, spans = (int(n) for n in noise_spans(length, density, mean_span))
    noise_lengths = _random_segmentation(noise, spans, rng)
    kept_lengths = _random_segmentation(length - noise, spans, rng)
    # Runs alternate kept, noise, kept, noise...: count run boundaries up to each position;
    # odd counts are noise.
    boundaries = np.cumsum(np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1))[:-1]
    run = np.zeros(length, dtype=np.int64)
    run[boundaries] = 1
    return np.cumsum(run) % 2 == 1


def noise_spans(length, density: float, mean_span: float) -> tuple[np.ndarray, np.ndarray]:
    """How many of `length` tokens (2 or more; a number or an array) are noise, and in
    how many spans (`noise_mask`). `np.rint` rounds half to even, as `round` does."""
    length = np.asarray(length, dtype=np.int64)
    noise = np.minimum(np.maximum(np.rint(length * density).astype(np.int64), 1), length - 1)
    spans = np.maximum(np.rint(noise / mean_span).astype(np.int64), 1)
    spans = np.minimum(np.minimum(spans, noise), np.minimum(length - noise, NUM_SENTINELS))
    return noise, spans


def span_counts(length, settings: ExampleSettings) -> tuple[np.ndarray, np.ndarray]:
    """(source length, target length) of span-masking examples of `length` tokens (a
    number or an array), without building them."""
    length = np.asarray(length, dtype=np.int64)
    noise, spans = noise_spans(
        np.maximum(length, 2), settings.noise_density, settings.mean_noise_span
    )
    short = length < 2
    return (
        np.where(short, length + 1, length - noise + spans + 1),
        np.where(short, 1, noise + spans + 1),
    )


def build_span_masking(
    ids: Sequence[int], vocab: Vocabulary, settings: ExampleSettings, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Source and target ids of one span-masking example (both end with </s>)."""
    mask = noise_mask(len(ids), settings.noise_density, settings.mean_noise_span, rng)
    return apply_span_mask(ids, mask, vocab)


def apply_span_mask(
    ids: Sequence[int], mask: np.ndarray, vocab: Vocabulary
) -> tuple[list[int], list[int]]:
    """Replace each run of masked tokens by the next sentinel; the target lists what each hid."""
    ids = np.asarray(ids, dtype=np.int64)
    starts = mask & ~np.concatenate([[False], mask[:-1]])  # first token of each noise span
    sentinels = np.asarray(vocab.sentinels[: int(starts.sum())], dtype=np.int64)
    # source: kept tokens, and each span's sentinel where the span began
    source = np.where(starts, 0, ids)
    source[starts] = sentinels
    source = source[~mask | starts]
    # target: the noise tokens, each span preceded by its sentinel
    target = np.insert(ids[mask], np.flatnonzero(starts[mask]), sentinels)
    return source.tolist() + [vocab.eos], target.tolist() + [vocab.eos]


def span_room(settings: ExampleSettings) -> int:
    """The tokens a span-masking sequence may hold (markers included): the masked source
    (never longer than the sequence, plus </s>) and the target (the noise plus one sentinel
    a span) must both fit."""
    target_share = settings.noise_density * (1 + 1 / settings.mean_noise_span)
    return min(settings.max_source_tokens - 1, int((settings.max_target_tokens - 2) / target_share))


def pretraining_ids(
    tokens: dict[str, Sequence[int]], vocab: Vocabulary, settings: ExampleSettings
) -> list[int]:
    """The sequence span masking is applied to: a method's features after their markers.

    Cut so that the masked source (never longer than the sequence, plus </s>) and the
    target (the noise plus one sentinel a span, about a fifth of the sequence) both fit.
    """
    names = [
        f for f in SOURCE_ORDER if len(tokens.get(f, ())) and (settings.context or f in FEATURES)
    ]
    budgets = source_budgets({f: len(tokens[f]) for f in names}, span_room(settings) - len(names))
    ids: list[int] = []
    for name in SOURCE_ORDER:
        if budgets.get(name):
            ids.append(vocab.features[name])
            ids.extend(cut_at_line(tokens[name], budgets[name], vocab.newline_ids))
    return ids


# ------------------------------------------------------------------ from a record


def encode_fields(records: list[dict], tokenizer) -> list[dict[str, list[int]]]:
    """Token ids of every field of each record, with special-token text kept literal.

    The same encoding as the token cache's, for methods that do not come from a corpus
    (a user's function at translation time, `codemt examples`).
    """
    texts = [feature_texts(r) for r in records]
    literal = tokenizer.encode_special_tokens
    tokenizer.encode_special_tokens = True
    try:
        encoded = {
            name: tokenizer.encode_batch([t[name] for t in texts], add_special_tokens=False)
            for name in TOKEN_FIELDS
        }
    finally:
        tokenizer.encode_special_tokens = literal
    return [{name: encoded[name][i].ids for name in TOKEN_FIELDS} for i in range(len(records))]
