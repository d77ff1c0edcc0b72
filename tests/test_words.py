"""The real-words constraint: docstrings only in the words of the training docstrings or the source."""

import random
import re
import shutil

import pytest

from codemt.words import (
    WORDS_FILE,
    WordConstraint,
    docstring_words,
    read_words,
    source_words,
    write_words,
)

LETTERS = re.compile(r"[A-Za-z]+")


def test_docstring_words_keep_the_words_used_often_enough():
    texts = ["Return the value.", "Return a list of values.", "Frobnicate the value"]
    assert docstring_words(texts) == ["return", "the", "value"]
    assert "frobnicate" in docstring_words(texts, min_count=1)


def test_source_words_split_identifiers():
    words = source_words("def lowStock(server: HTTPServer, low_stock2): pass")
    assert {"lowstock", "low", "stock", "httpserver", "http", "server", "def", "pass"} <= words


def test_the_word_list_round_trips(tmp_path):
    assert read_words(tmp_path) is None, "a model without a list is not constrained"
    write_words([], tmp_path)
    assert read_words(tmp_path) is None, "nor one with an empty list"
    write_words(["alpha", "beta"], tmp_path)
    assert read_words(tmp_path) == {"alpha", "beta"}
    (tmp_path / WORDS_FILE).write_text("alpha\n\nBeta two\n")
    with pytest.raises(ValueError, match=r"words.txt:3: 'Beta two' is not a lower-case"):
        read_words(tmp_path)


@pytest.fixture(scope="module")
def constraint(small_tokenizer):
    words = ["return", "the", "a", "an", "rest", "restore", "value", "of", "list", "values", "s"]
    from codemt.examples import Vocabulary

    return WordConstraint(small_tokenizer, words, Vocabulary.from_tokenizer(small_tokenizer).eos)


def test_the_word_being_written_spans_tokens(constraint, small_tokenizer):
    ids = small_tokenizer.encode("Return the restor").ids
    assert constraint.writing(ids) == "restor"
    assert constraint.writing(small_tokenizer.encode("Return the (").ids) == ""


def test_the_text_ends_only_after_a_whole_word(constraint, small_tokenizer):
    from codemt.examples import Vocabulary

    eos = Vocabulary.from_tokenizer(small_tokenizer).eos
    for text, ends in (("Return the rest", True), ("Return the resto", False), ("(", True)):
        ids = small_tokenizer.encode(text).ids
        assert bool(constraint.allowed(ids, set(), constraint.inside_ok)[eos]) == ends, text


def walk(constraint, own, seed, steps=25):
    """A random text of `steps` tokens, each drawn among those the constraint allows."""
    rng = random.Random(seed)
    inside = constraint.inside_allowed(own)
    ids = []
    for _ in range(steps):
        allowed = constraint.allowed(ids, own, inside).nonzero().flatten().tolist()
        assert allowed, f"no token may follow {ids}"
        ids.append(rng.choice(allowed))
    return ids


def test_every_text_allowed_is_made_of_allowed_words(constraint, small_tokenizer):
    own = source_words("def restock(self, amount):")
    allowed = constraint.words | own
    prefixes = {w[:i] for w in allowed for i in range(1, len(w) + 1)}
    for seed in range(30):
        text = small_tokenizer.decode(walk(constraint, own, seed), skip_special_tokens=True)
        runs = LETTERS.findall(text)
        ends_in_word = bool(runs) and text.endswith(runs[-1])
        whole = runs[:-1] if ends_in_word else runs
        assert all(w.lower() in allowed for w in whole), text
        if ends_in_word:
            assert runs[-1].lower() in prefixes, text


def naive_allowed(constraint, tokenizer, word, own, end):
    """The tokens that may follow the word being written, straight from the definition."""
    words = constraint.words | own
    prefixes = {w[:i] for w in words for i in range(1, len(w) + 1)}
    allowed = set()
    for i in range(tokenizer.get_vocab_size()):
        text = tokenizer.decode([i], skip_special_tokens=True)
        if not text and i != end:
            continue
        runs = [m for m in LETTERS.finditer(text.lower())]
        if text and LETTERS.fullmatch(text):
            ok = word + text.lower() in prefixes
        else:
            lead = runs[0].group() if runs and runs[0].start() == 0 else ""
            tail = runs[-1].group() if runs and runs[-1].end() == len(text) else ""
            inner = [m.group() for m in runs[bool(lead) : len(runs) - bool(tail)]]
            finished = word + lead
            ok = (not finished or finished in words) and all(w in words for w in inner)
            ok = ok and (not tail or tail in prefixes)
        if ok:
            allowed.add(i)
    return allowed


@pytest.mark.parametrize("own_text", ["", "def restock(self, amount, zq_value):", "tails"])
def test_the_masks_follow_the_definition(small_tokenizer, own_text):
    """The indexes behind the masks (words by prefix, refused tokens by what they lack)
    give exactly the tokens the definition allows, for a list large enough to take
    either path. "tails": a source whose words begin with half of the runs that end
    tokens and begin no listed word. (Byte-level BPE keeps letters and punctuation
    apart, so no token holds a run whole between others.)"""
    from codemt.examples import Vocabulary

    tokenizer = small_tokenizer
    end = Vocabulary.from_tokenizer(tokenizer).eos
    texts = [tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())]
    words = sorted({t.strip().lower() for t in texts if t.strip().isalpha()})[::3]
    constraint = WordConstraint(tokenizer, words, end)
    if own_text == "tails":
        prefixes = {w[:i] for w in words for i in range(1, len(w) + 1)}
        tails = {r[-1].lower() for t in texts if not t.isalpha() and (r := LETTERS.findall(t))}
        unlisted = sorted(t for t in tails if t not in prefixes)
        assert len(unlisted) >= 4, "the tokenizer has too few tokens ending in a letter run"
        own = {t + "q" for t in unlisted[::2]}
    else:
        own = source_words(own_text)
    inside = constraint.inside_allowed(own)
    assert bool((inside != constraint.inside_ok).any()) == bool(own_text), "nothing admitted"
    for seed in range(4):
        ids = walk(constraint, own, seed, steps=6)
        for step in range(len(ids) + 1):
            mask = constraint.allowed(ids[:step], own, inside)
            word = constraint.writing(ids[:step])
            expected = naive_allowed(constraint, tokenizer, word, own, end)
            assert set(mask.nonzero().flatten().tolist()) == expected, (seed, step, word)


def test_the_source_words_are_allowed_too(constraint, small_tokenizer):
    ids = small_tokenizer.encode("Return the rest").ids
    pieces = {small_tokenizer.decode([i]) for i in range(small_tokenizer.get_vocab_size())}
    assert "o" in pieces and "c" in pieces
    without = constraint.allowed(ids, set(), constraint.inside_ok)
    own = {"restock"}
    with_own = constraint.allowed(ids, own, constraint.inside_allowed(own))
    c = small_tokenizer.token_to_id("c")
    assert not without[c] and not with_own[c], "'restc' begins no word"
    o = small_tokenizer.token_to_id("o")
    assert without[o] and with_own[o]  # restore, restock
    after = small_tokenizer.encode("Return the resto").ids
    assert not constraint.allowed(after, set(), constraint.inside_ok)[c]
    assert constraint.allowed(after, own, constraint.inside_allowed(own))[c]


def test_special_tokens_other_than_the_end_are_never_allowed(constraint, small_tokenizer):
    from codemt.examples import Vocabulary
    from codemt.tokenizer import SPECIAL_TOKENS, special_token_id

    eos = Vocabulary.from_tokenizer(small_tokenizer).eos
    allowed = constraint.allowed([], set(), constraint.inside_ok)
    specials = {special_token_id(small_tokenizer, t) for t in SPECIAL_TOKENS} - {eos}
    assert specials and not any(allowed[i] for i in specials) and allowed[eos]


def test_each_row_is_checked_against_its_own_source(constraint, small_tokenizer):
    import torch

    sources = ["def restock(amount):", "def refund(order):"]
    processor = constraint.processor(sources)
    beams = 3
    ids = [0, *small_tokenizer.encode("Return the resto").ids]  # decoder start, then text
    rows = torch.tensor([ids] * (len(sources) * beams))
    scores = processor(rows, torch.zeros(len(rows), constraint.size))
    c = small_tokenizer.token_to_id("c")
    # "restoc" begins a word of the first source only: its beams may write it, the second's not.
    assert scores[:beams, c].isfinite().all() and scores[beams:, c].isinf().all()


def test_translations_keep_to_the_words(tiny_model, tmp_path, one_torch_thread):
    from codemt.generation import GenerationSettings
    from codemt.model import resolve_checkpoint
    from codemt.translate import Translator

    model = tmp_path / "model"
    shutil.copytree(resolve_checkpoint(tiny_model), model)
    method = "def add_values(first, second):\n    return first + second\n"
    words = ["return", "the", "of", "a", "value"]
    write_words(words, model)
    allowed = set(words) | source_words(method)
    settings = GenerationSettings(num_beams=2, max_new_tokens=24)
    text = Translator.load(model, settings=settings, backend="torch").translate(method, "docstring")
    assert all(w.lower() in allowed for w in LETTERS.findall(text)), text


def test_code_is_never_constrained(tiny_model, tmp_path, monkeypatch, one_torch_thread):
    from codemt.generation import GenerationSettings
    from codemt.model import resolve_checkpoint
    from codemt.translate import Translator

    model = tmp_path / "model"
    shutil.copytree(resolve_checkpoint(tiny_model), model)
    write_words(["return"], model)

    def refuse(self, sources):
        raise AssertionError("a word constraint was built for code")

    monkeypatch.setattr(WordConstraint, "processor", refuse)
    translator = Translator.load(model, settings=GenerationSettings(max_new_tokens=8))
    for target in ("body", "signature"):
        translator.translate("def add_values(first, second):\n    return first\n", target)
    with pytest.raises(AssertionError, match="built for code"):  # as docstrings would
        translator.translate("def add_values(first, second):\n    return first\n", "docstring")
