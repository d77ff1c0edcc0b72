"""Translation: one API object that turns a method's features into another feature.

`Translator` serves everything that generates text (the `codemt translate` command, the
evaluator, the docstring writer, the server)::

    translator = Translator.load("runs/multimode")        # a checkpoint or run folder
    translator.translate("def add(a, b):\\n    return a + b", "docstring")
    translator.translate_batch(methods, "body")            # -> list[Translation]

The model runs on PyTorch, or on a CTranslate2 export made by `codemt export` (several times
faster on CPU); `Translator.load(path, backend="auto")` picks the export when there is one
and ctranslate2 is installed (`codemt.backends`).

A method is given as source text (parsed with the miner's extractor, so its features are
exactly those the model was trained on) or as a corpus record. The model's input is built
by `codemt.examples.build_translation` with the checkpoint's example settings, so it is the
input of training to the token. Code targets are chosen syntax-aware: among the beams, the
best-scored one that parses. Docstrings are chosen by score plus a bonus for the share of the
function's name and parameter words they mention (`GenerationSettings.name_weight`).
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemt.backends import BACKENDS, read_meta, select_backend
from codemt.examples import (
    DEF_NAME,
    DOCSTRING_STYLES,
    FEATURES,
    ExampleSettings,
    Mode,
    Vocabulary,
    build_translation,
    encode_fields,
    name_words,
)
from codemt.generation import (
    FINISHERS,
    Candidate,
    GenerationSettings,
    Translation,
    choose_candidate,
    code_parses,
    could_win,
    method_name_words,
    name_coverage,
)
from codemt.memory import likeness
from codemt.model import PRESETS
from codemt.source.docstrings import prose_summary, summary_of
from codemt.source.extract import extract_methods
from codemt.source.reading import SkipFile, parse_with_repairs
from codemt.tokenizer import load_tokenizer
from codemt.write.templates import build_docstring, docstring_text, facts_of, parse_descriptions

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from codemt.backends import Backend
    from codemt.memory import Memory, ProjectMemory

    MemoryLike = Memory | ProjectMemory

TARGETS = FEATURES
DEFAULT_MODEL = "default"
# Where the shipped default model lives: in the installed package, or in a source checkout.
DEFAULT_MODEL_DIRS = (
    Path(__file__).resolve().parent / "models" / DEFAULT_MODEL,
    Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL,
)
# A record needs these keys for `feature_texts`; a user's dict may leave any of them out.
_EMPTY_RECORD: dict[str, Any] = {
    "name": "",
    "signature": "",
    "docstring": "",
    "body": "",
    "decorators": [],
    "class_name": "",
    "class_bases": [],
    "class_docstring": "",
    "imports": [],
}


# ------------------------------------------------------------------ methods and features


def parse_method(source: str) -> dict[str, Any]:
    """The record of the first function in `source`, as the miner extracts it.

    The source may be a whole function or only its signature (with or without a docstring);
    it may be indented, as a method copied out of a class. Raises ValueError naming the line
    when the text does not parse or holds no function.
    """
    text = textwrap.dedent(source.replace("\r\n", "\n"))
    placeholder_line = None
    try:
        tree = parse_with_repairs(text)[0]
    except SkipFile as error:
        # A signature alone does not parse; complete it with a body to be dropped again.
        lines = text.rstrip().split("\n")
        indent = re.match(r"[ \t]*", lines[-1]).group(0)
        try:
            tree = parse_with_repairs("\n".join([*lines, indent + "    pass"]))[0]
        except SkipFile:
            raise ValueError(f"not a Python function: {error}") from None
        placeholder_line = len(lines) + 1
    functions = [s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not functions:
        where = f"line {tree.body[0].lineno}: " if tree.body else ""
        raise ValueError(f"{where}not a function definition (expected `def name(...):`)")
    found = [(n, r) for n, r in extract_methods(tree, repo="", path="") if n is functions[0]]
    if not found:  # the extractor skips what unparses too deeply
        raise ValueError(f"line {functions[0].lineno}: the function is nested too deeply to read")
    node, record = found[0]
    if placeholder_line is not None and node.body[-1].lineno == placeholder_line:
        record["body"] = ""
    return record


def method_record(method: str | dict[str, Any]) -> dict[str, Any]:
    """A method given as source text or as a (possibly partial) corpus record, as a record."""
    if isinstance(method, str):
        return parse_method(method)
    return {**_EMPTY_RECORD, **method}


def source_features(record: dict[str, Any], target: str) -> tuple[str, ...]:
    """What the model translates from: every other feature the method has."""
    check_target(target)
    sources = tuple(f for f in FEATURES if f != target and record.get(f))
    if not sources:
        others = " or ".join(f for f in FEATURES if f != target)
        raise ValueError(f"nothing to translate from: the method has no {others}")
    return sources


def check_target(target: str) -> None:
    """Raise a ValueError unless `target` is a feature the model can produce."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def resolve_style(target: str, style: str | None) -> str | None:
    """The style code to ask for: `summary` unless told, for docstrings only."""
    if target != "docstring":
        if style is not None:
            raise ValueError(f"a style applies to docstrings only, not to {target}")
        return None
    style = style or "summary"
    if style not in DOCSTRING_STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(DOCSTRING_STYLES)}")
    return style


# ------------------------------------------------------------------ project memory


def adapt_summary(summary: str, neighbor_signature: str, record: dict[str, Any]) -> str:
    """A neighbour's summary with the words in which its name differs from the method's
    replaced, where the names have as many words, differ in one or two and share one
    (or are one word each):
    "Downloads CBS videos by URL." of `download_cbs`, for `download_sina`, is "Downloads
    Sina videos by URL.". "" when the names do not line up or nothing was replaced."""
    match = DEF_NAME.search(neighbor_signature)
    own = name_words(str(record.get("name") or "")).split()
    theirs = name_words(match.group(1)).split() if match else []
    if not own or len(own) != len(theirs):
        return ""
    pairs = [(t, o) for t, o in zip(theirs, own, strict=True) if t != o]
    # Names of several words that share none (`read_items`, `low_stock`) do different
    # things: swapping them all makes a sentence about neither. One-word names are
    # siblings of a kind (`union`, `intersection`).
    if not 1 <= len(pairs) <= 2 or len(pairs) == len(own) > 1:
        return ""
    adapted = summary
    for theirs_word, own_word in pairs:
        adapted = re.sub(
            rf"\b{re.escape(theirs_word)}\b",
            lambda m, w=own_word: w.capitalize() if m.group(0)[0].isupper() else w,
            adapted,
            flags=re.IGNORECASE,
        )
        # "an amount" of `format_amount` is "a price" of `format_price`.
        adapted = re.sub(
            rf"\b(an?)(\s+)(?={re.escape(own_word)}\b)",
            lambda m, w=own_word: _article(m.group(1), w) + m.group(2),
            adapted,
            flags=re.IGNORECASE,
        )
    return adapted if adapted != summary else ""


def offered_summaries(
    record: dict[str, Any],
    neighbors: Sequence[dict[str, Any]],
    settings: GenerationSettings,
    sources: Sequence[str] = ("signature", "body"),
) -> list[tuple[str, float]]:
    """A method's neighbours' summaries, each as it is and adapted to the method's names
    (`adapt_summary`), with the bonus it is ranked with (`GenerationSettings.offer_bonus`:
    the more alike the neighbour's code, compared by the `sources` features alone, the
    code the model reads, the more); each text once, with its largest bonus."""
    seen = _read_code(record, sources)
    alike = [likeness(seen, neighbor) for neighbor in neighbors]
    bonuses: dict[str, float] = {}
    for text, adapted, i in _summaries(record, neighbors):
        bonus = settings.offer_bonus(alike[i], adapted)
        bonuses[text] = max(bonus, bonuses.get(text, -math.inf))
    return list(bonuses.items())


def summary_origins(record: dict[str, Any], neighbors: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The neighbours' summaries, as they are and adapted to the method's names (each also
    as a generated docstring is finished), mapped to what the user is told of a docstring
    that is one of them (`origin_of`; the first neighbour's that has it)."""
    origins: dict[str, str] = {}
    for text, adapted, i in _summaries(record, neighbors):
        told = origin_of(neighbors[i], adapted)
        if told:
            origins.setdefault(text, told)
            origins.setdefault(FINISHERS["docstring"](text), told)
    return origins


def origin_of(neighbor: dict[str, Any], adapted: bool) -> str:
    """Whose summary a docstring is: "the summary of read_orders (orders.py:30), its names
    adapted" for a function of the project's memory, by the name of its `def` line for a
    request's context item; "" for a neighbour without either."""
    found = DEF_NAME.search(neighbor.get("signature") or "")
    name = neighbor.get("name") or (found.group(1) if found else "")
    if not name:
        return ""
    where = f" ({neighbor['path']}:{neighbor['line']})" if neighbor.get("path") else ""
    return f"the summary of {name}{where}, " + ("its names adapted" if adapted else "word for word")


def _summaries(
    record: dict[str, Any], neighbors: Sequence[dict[str, Any]]
) -> Iterator[tuple[str, bool, int]]:
    """Each neighbour's summary adapted to the method's names (`adapt_summary`, where its
    names differ by a word or two) and as it is: (text, adapted, the neighbour's index)."""
    for i, neighbor in enumerate(neighbors):
        summary = neighbor.get("docstring") or ""
        adapted = adapt_summary(summary, neighbor.get("signature") or "", record)
        for text, was_adapted in ((adapted, True), (summary, False)):
            if text:
                yield text, was_adapted, i


def alike_enough(
    record: dict[str, Any],
    neighbors: Sequence[dict[str, Any]],
    settings: GenerationSettings,
    sources: Sequence[str] = ("signature", "body"),
) -> bool:
    """Whether a method's docstring is written with these neighbours: the code of one of
    them, compared by the `sources` features, is at least `settings.least_likeness` alike.
    A neighbour without a body (a request's context item) is compared by signature; with
    the body as the only source, such a neighbour is never alike."""
    seen = _read_code(record, sources)
    return any(likeness(seen, n) >= settings.least_likeness for n in neighbors)


def _read_code(record: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    """The method's code features among `sources`: what the model reads of it, and what
    its neighbours' code is compared with."""
    return {f: record.get(f) for f in ("signature", "body") if f in sources}


def structured(record: dict[str, Any], result: Translation, style: str) -> Translation:
    """A generated docstring in a sectioned style rebuilt from the method's code: its
    parameters, returns, yields and raises as the code has them (never one twice, never
    one it lacks), the model's summary and descriptions where it gave them; the model's
    text as it is where the method's code does not parse."""
    decorators = "".join(f"@{d}\n" for d in record.get("decorators") or ())
    try:
        tree = ast.parse(f"{decorators}{record['signature']}\n{record['body'] or '    ...'}")
    except (SyntaxError, ValueError, RecursionError):
        return result
    function = tree.body[0] if tree.body else None
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return result
    static = any(d.split(".")[-1] == "staticmethod" for d in record.get("decorators") or ())
    facts = facts_of(function, is_method=bool(record.get("class_name")) and not static)
    summary = prose_summary(result.text) or summary_of(result.text)
    found = parse_descriptions(result.text, style)
    text = docstring_text(build_docstring(summary, facts, style, found))
    return replace(result, text=text)


def _article(article: str, word: str) -> str:
    """ "a" or "an" before `word` (by its first letter), capitalised as `article` was."""
    chosen = "an" if word[:1].lower() in "aeiou" else "a"
    return chosen.capitalize() if article[:1].isupper() else chosen


# ------------------------------------------------------------------ the translator


def default_model_path() -> Path:
    """The folder of the shipped default model, or a FileNotFoundError saying it is missing."""
    for folder in DEFAULT_MODEL_DIRS:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"the default model is not installed (looked in {DEFAULT_MODEL_DIRS[0]} and "
        f"{DEFAULT_MODEL_DIRS[1]}): reinstall codemt from its source checkout, which holds it "
        f"in models/default (`pip install -e .`), or pass --model with a checkpoint path, "
        f"e.g. a run folder written by `codemt train`, or the model `codemt recipe default` "
        f"builds (~/.cache/codemt/runs/default/model)"
    )


def example_settings(meta: dict[str, Any]) -> ExampleSettings:
    """The example settings a checkpoint was trained with, from its `codemt.json`.

    They are read from the key "examples", or from "modes" -> "examples", where
    `codemt train` records them through `train(modes=...)`. Checkpoints that record none
    were trained with the defaults and a source as long as the preset's context.
    """
    recorded = meta.get("examples") or (meta.get("modes") or {}).get("examples")
    if recorded:
        return ExampleSettings(**recorded)
    context = meta.get("context") or PRESETS[meta.get("preset", "small")].context
    return ExampleSettings(max_source_tokens=context)


class Translator:
    """A loaded model that translates methods between features.

    Attributes:
        path: the folder the model was loaded from (a checkpoint or a CTranslate2 export).
        meta: its `codemt.json`.
        settings: the default generation settings (each call may pass its own).
        examples: the example settings inputs are built with.
        backend: what generates: `torch`, `torch-bf16`, `torch-int8` or `ctranslate2` (see
            `codemt.backends`).
    """

    def __init__(
        self,
        backend: Backend,
        path: Path,
        meta: dict[str, Any],
        tokenizer: Tokenizer,
        vocab: Vocabulary,
        *,
        settings: GenerationSettings | None = None,
        memory: MemoryLike | None = None,
    ) -> None:
        self.backend = backend
        self.path = path
        self.meta = meta
        self.settings = settings or GenerationSettings()
        self.examples = example_settings(meta)
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.memory = memory

    @property
    def reads_neighbors(self) -> bool:
        """Whether the model was trained to read project neighbours (`codemt.memory`)."""
        return self.examples.neighbors > 0

    def neighbors_read(self, settings: GenerationSettings | None = None) -> int:
        """How many neighbours the model reads: `settings.neighbors`, at most as many as it
        was trained with (0 for a model that does not read them)."""
        wanted = (settings or self.settings).neighbors
        return self.examples.neighbors if wanted is None else min(wanted, self.examples.neighbors)

    def neighbors_wanted(self, target: str, settings: GenerationSettings | None = None) -> int:
        """How many neighbours a method of `target` is looked up with: those the model
        reads and, for docstrings, those whose summaries are offered beside what it
        writes (`offered_neighbors`); 0 for a model that does not read them."""
        if not self.reads_neighbors:
            return 0
        settings = settings or self.settings
        read = self.neighbors_read(settings)
        return max(read, settings.offered_neighbors) if target == "docstring" else read

    def neighbors_of(
        self,
        record: dict[str, Any],
        target: str,
        memory: MemoryLike | None = None,
        settings: GenerationSettings | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The neighbours a method is translated with, best first (the memory's ranking, or
        as given): those its record carries (`record["neighbors"]`, a list of Neighbor or
        {signature, docstring[, body]}), else the memory's, at most `neighbors_wanted` of
        them (the model reads the first `neighbors_read`); none for a model that does not
        read them, and none for a docstring when none of them is alike enough
        (`alike_enough`, comparing the `sources` features: by default the method's)."""
        settings = settings or self.settings
        k = self.neighbors_wanted(target, settings)
        if not k:
            return []
        if "neighbors" in record:
            given = record["neighbors"] or []
        else:
            memory = self.memory if memory is None else memory
            given = memory.neighbors(record, k, target=target) if memory is not None else []
        found = [n.as_record() if hasattr(n, "as_record") else dict(n) for n in given[:k]]
        if target == "docstring" and not alike_enough(
            record, found, settings, sources or source_features(record, target)
        ):
            return []  # alone: a sibling that does something else lends the wrong sentence
        return found

    @classmethod
    def load(
        cls,
        path_or_name: str | Path,
        *,
        settings: GenerationSettings | None = None,
        device: str | torch.device | None = None,
        backend: str = "auto",
        threads: int | None = None,
        memory: MemoryLike | None = None,
    ) -> Translator:
        """Load a checkpoint folder, a run folder (its best, else newest checkpoint), an export
        or `default`.

        `backend`: "torch" (float32, the reference), "torch-bf16" (bfloat16, on a CPU with
        bfloat16 instructions), "torch-int8", "ctranslate2" (a `codemt export` of the model:
        the folder itself or its checkpoint's `ctranslate2/` subfolder) or "auto":
        ctranslate2 when it is installed and the model has an export, else torch-bf16 where
        the CPU computes in bfloat16, else torch. The model runs on the GPU when
        there is one, unless `device` says otherwise. `threads`: CPU threads (torch: its
        process-wide setting; ctranslate2: this model's). Raises FileNotFoundError when the
        path holds no model, `codemt.backends.BackendUnavailable` (a ValueError) when the
        backend asked for is not installed or the model has no form it loads.
        """
        path = default_model_path() if str(path_or_name) == DEFAULT_MODEL else path_or_name
        name, folder = select_backend(path, backend)
        tokenizer = load_tokenizer(folder)
        vocab = Vocabulary.from_tokenizer(tokenizer)
        opened = BACKENDS[name].open(folder, tokenizer, vocab, device=device, threads=threads)
        meta = read_meta(folder)
        return cls(opened, folder, meta, tokenizer, vocab, settings=settings, memory=memory)

    @property
    def model(self) -> Any:
        """The backend's model: a `T5ForConditionalGeneration` or a `ctranslate2.Translator`."""
        return self.backend.model

    @property
    def device(self) -> Any:
        """Where the model runs (torch: a `torch.device`; ctranslate2: "cpu" or "cuda")."""
        return self.backend.device

    @property
    def parameters(self) -> int:
        """Number of model parameters, whichever the backend."""
        return self.backend.parameters

    @property
    def has_word_list(self) -> bool:
        """Whether docstrings can be kept to real words (`GenerationSettings.real_words`):
        the torch backend and a model that carries a word list."""
        return getattr(self.backend, "words", None) is not None

    def translate(
        self,
        method: str | dict[str, Any],
        target: str,
        style: str | None = None,
        *,
        settings: GenerationSettings | None = None,
    ) -> str:
        """Translate one method (source text or record) into `target`; return the text.

        A docstring comes without quotes, dedented; a body indented by four spaces; a
        signature as one line. `style` (docstrings only): summary (default), google,
        numpy, rest or author.
        """
        return self.translate_batch([method], target, style, settings=settings)[0].text

    def encode(
        self,
        methods: Sequence[str | dict[str, Any]],
        target: str,
        style: str | None = None,
        *,
        sources: Sequence[str] | None = None,
        memory: MemoryLike | None = None,
        neighbors: Sequence[list[dict[str, Any]]] | None = None,
    ) -> list[list[int]]:
        """The model inputs of methods, exactly as training builds them (ending with </s>).

        `sources` fixes the source features (every method must have them); by default
        each method's other non-empty features are used. Neighbours follow, for a model
        that reads them (`neighbors_of`; `memory` stands for the translator's own), or
        those given per method (`neighbors`).
        """
        style = resolve_style(target, style)
        records = [method_record(m) for m in methods]
        modes = []
        for record in records:
            if sources is None:
                features = source_features(record, target)
            else:
                features = Mode.parse(f"{'+'.join(sources)}->{target}").sources
                missing = [f for f in features if not record.get(f)]
                if missing:
                    raise ValueError(
                        f"{record.get('name') or 'the method'} has no {', '.join(missing)}"
                    )
            modes.append(Mode(features, target))
        tokens = encode_fields(records, self.tokenizer)
        if neighbors is None:
            read = self.neighbors_read()
            neighbors = [
                self.neighbors_of(r, target, memory, None, sources)[:read] for r in records
            ]
        counts = [len(n) for n in neighbors]
        flat = encode_fields([n for found in neighbors for n in found], self.tokenizer)
        starts = [0, *itertools.accumulate(counts)][:-1]
        return [
            build_translation(
                t, mode, style, self.vocab, self.examples, flat[start : start + count]
            )[0]
            for t, mode, start, count in zip(tokens, modes, starts, counts, strict=True)
        ]

    def translate_batch(
        self,
        methods: Sequence[str | dict[str, Any]],
        target: str,
        style: str | None = None,
        *,
        sources: Sequence[str] | None = None,
        settings: GenerationSettings | None = None,
        progress: bool = False,
        memory: MemoryLike | None = None,
    ) -> list[Translation]:
        """Translate many methods into `target`, in batches of similar length.

        Results come in the order of `methods`. `sources` fixes the source features, as
        in `encode`; `memory` the project memory, as there. A method that cannot be read
        raises ValueError naming it.
        """
        from tqdm.auto import tqdm

        check_target(target)
        settings = (settings or self.settings).for_target(target)
        records = []
        for i, method in enumerate(methods):
            try:
                records.append(method_record(method))
            except ValueError as error:
                raise ValueError(
                    f"method {i}: {error}" if len(methods) > 1 else str(error)
                ) from None
        looked_up = [self.neighbors_of(r, target, memory, settings, sources) for r in records]
        read = self.neighbors_read(settings)
        inputs = self.encode(
            records, target, style, sources=sources, neighbors=[n[:read] for n in looked_up]
        )
        # Summaries written in the project: the neighbours' own (and, where names differ by a
        # word or two, adapted to this method's names) join the beams as candidates, scored
        # by the model as it scores what it writes.
        offers = [n[: settings.offered_neighbors] for n in looked_up]
        offered = self._offered(records, offers, target, style, settings, sources)
        # Longest first: similar lengths share a batch, and memory runs out early if at all.
        # Methods with summaries offered are generated apart where their beam width differs.
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
        alone, beside = settings, settings.with_offered_summaries()
        ranked = [beside if texts else alone for texts in offered]  # each method's settings
        groups = [order]
        if beside.num_beams != alone.num_beams:  # (the name weight only chooses)
            groups = [[i for i in order if not offered[i]], [i for i in order if offered[i]]]
        size = settings.batch_size
        batches = [
            group[start : start + size] for group in groups for start in range(0, len(group), size)
        ]
        results: dict[int, Translation] = {}
        with tqdm(total=len(inputs), unit="method", disable=not progress) as bar:
            for batch in batches:
                width = ranked[batch[0]]  # the batch's beams: the same for all of it
                # Every candidate comes back (beam search runs the same search for one or
                # all): code targets choose a parsing one, docstrings one that names what
                # the method's names say, where the model sees them.
                generated = self._generate(
                    [inputs[i] for i in batch],
                    width.candidates,
                    width,
                    words=target == "docstring",
                )
                candidates: dict[int, list[Candidate]] = {}
                words: dict[int, set[str]] = {}
                for i, sequences in zip(batch, generated, strict=True):
                    # A docstring is rewarded for naming what the method's names say, where
                    # the model sees them.
                    named = "signature" in (sources or source_features(records[i], target))
                    words[i] = method_name_words(records[i]) if named else set()
                    candidates[i] = self._candidates(records[i], target, sequences, words[i])
                # A summary that could not be chosen even if the model gave each of its
                # tokens all the probability is not scored: the decoder passes are the cost.
                worth = [
                    [
                        (text, bonus)
                        for text, bonus in offered[i]
                        if could_win(text, bonus, words[i], candidates[i], ranked[i])
                    ]
                    for i in batch
                ]
                scored = self._scored(
                    [inputs[i] for i in batch], [[text for text, _ in w] for w in worth]
                )
                for i, kept, own in zip(batch, worth, scored, strict=True):
                    with_bonus = [(t, s, b) for (t, s), (_, b) in zip(own, kept, strict=True)]
                    results[i] = self._finish(
                        target, candidates[i], words[i], ranked[i], with_bonus
                    )
                bar.update(len(batch))
        if target == "docstring":  # a neighbour's summary, chosen or copied whole: say whose
            for i, record in enumerate(records):
                # Only the neighbours the model read or was offered; in a sectioned style,
                # the summary that heads the model's sections.
                seen = looked_up[i][:read] + (offers[i] if offered[i] else [])
                origins = summary_origins(record, seen)
                text = results[i].text
                origin = origins.get(text) or origins.get(prose_summary(text), "")
                results[i] = replace(results[i], origin=origin)
        if target == "docstring" and style not in (None, "summary"):
            for i, record in enumerate(records):
                results[i] = structured(record, results[i], style)
        return [results[i] for i in range(len(inputs))]

    def _offered(
        self,
        records: list[dict[str, Any]],
        neighbors: list[list[dict[str, Any]]],
        target: str,
        style: str | None,
        settings: GenerationSettings,
        sources: Sequence[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Per method, the neighbours' summaries offered as candidates with their bonuses
        (`offered_summaries`); none unless the target is a summary, the settings ask for
        it and the backend can score text."""
        wanted = (
            target == "docstring"
            and (style or "summary") == "summary"
            and settings.neighbor_candidates
            and hasattr(self.backend, "score")
        )
        if not wanted:
            return [[] for _ in records]
        return [
            offered_summaries(record, found, settings, sources or source_features(record, target))
            for record, found in zip(records, neighbors, strict=True)
        ]

    def _scored(
        self, sources: list[list[int]], texts: list[list[str]]
    ) -> list[list[tuple[str, float]]]:
        """Per source, (text, score) pairs for its texts as targets, on the model's scale:
        one scoring call for them all."""
        flat = [t for found in texts for t in found]
        if not flat:
            return [[] for _ in sources]
        literal = self.tokenizer.encode_special_tokens
        self.tokenizer.encode_special_tokens = True
        try:
            encoded = self.tokenizer.encode_batch(flat, add_special_tokens=False)
        finally:
            self.tokenizer.encode_special_tokens = literal
        owners = [source for source, found in zip(sources, texts, strict=True) for _ in found]
        scores = iter(
            self.backend.score([(s, e.ids) for s, e in zip(owners, encoded, strict=True)])
        )
        return [[(t, next(scores)) for t in found] for found in texts]

    def _candidates(
        self,
        record: dict[str, Any],
        target: str,
        sequences: list[tuple[str, float]],
        words: set[str],
    ) -> list[Candidate]:
        """The generated sequences as finished candidates; docstrings with their coverage
        of `words`, code with whether it parses."""
        texts = [(FINISHERS[target](t), s) for t, s in sequences]
        if target == "docstring":
            return [Candidate(t, s, None, name_coverage(words, t)) for t, s in texts]
        return [Candidate(t, s, code_parses(record, target, t)) for t, s in texts]

    def _finish(
        self,
        target: str,
        generated: list[Candidate],
        words: set[str],
        settings: GenerationSettings,
        offered: Sequence[tuple[str, float, float]] = (),
    ) -> Translation:
        """The chosen candidate among the generated ones and `offered`, the scored
        neighbour summaries as (text, score, bonus) (their coverage of `words` counted as
        the generated ones')."""
        candidates = generated + [
            Candidate(t, s, None, name_coverage(words, t), bonus) for t, s, bonus in offered
        ]
        candidates.sort(key=lambda c: -c.score)
        best = choose_candidate(candidates, settings.name_weight)  # code: coverage 0
        if target == "docstring":
            return Translation(best.text, best.score)
        return Translation(best.text, best.score, best.parsed, candidates)

    def _generate(
        self,
        sources: list[list[int]],
        n_return: int,
        settings: GenerationSettings,
        *,
        words: bool = False,
    ) -> list[list[tuple[str, float]]]:
        """Generate `n_return` sequences per source: (decoded text, score) pairs; `words`:
        prose, kept in real words where `settings.real_words` asks for it."""
        generated = self.backend.generate(
            sources, n_return, settings, words=words and settings.real_words
        )
        flat = [h for hypotheses in generated for h in hypotheses]
        texts = self.tokenizer.decode_batch([h.ids for h in flat], skip_special_tokens=True)
        pairs = [(text, h.score) for text, h in zip(texts, flat, strict=True)]
        return [pairs[i : i + n_return] for i in range(0, len(pairs), n_return)]
