"""Multi-mode examples and T5 span masking on hand-worked cases."""

import numpy as np
import pytest

from codemt.examples import (
    ExampleSettings,
    Mode,
    Vocabulary,
    all_modes,
    apply_span_mask,
    available_modes,
    build_span_masking,
    build_translation,
    cut_at_line,
    feature_texts,
    noise_mask,
    signature_names,
    span_counts,
    target_style,
)

NEWLINE = 7
VOCAB = Vocabulary(
    eos=1,
    pad=0,
    features={"signature": 3, "docstring": 4, "body": 5, "class": 6, "decorators": 8, "imports": 9},
    targets={"signature": 10, "docstring": 11, "body": 12},
    styles={"summary": 13, "google": 14, "numpy": 15, "rest": 16, "author": 17},
    sentinels=tuple(range(100, 200)),
    newline_ids=frozenset({NEWLINE}),
)


def test_every_mode_of_a_three_feature_method():
    assert [m.name for m in all_modes()] == [
        "body->docstring",
        "body->signature",
        "docstring->body",
        "docstring->signature",
        "docstring+body->signature",
        "signature->body",
        "signature->docstring",
        "signature+body->docstring",
        "signature+docstring->body",
    ]


def test_modes_follow_the_features_a_method_has():
    no_doc = available_modes(
        {"signature": True, "docstring": False, "body": True}, docstring_task=False
    )
    assert [m.name for m in no_doc] == ["body->signature", "signature->body"]
    not_eligible = available_modes(
        {"signature": True, "docstring": True, "body": True}, docstring_task=False
    )
    assert all(m.target != "docstring" for m in not_eligible) and len(not_eligible) == 6


def test_mode_names_parse_and_bad_ones_are_explained():
    assert Mode.parse("body+signature->docstring") == Mode(("signature", "body"), "docstring")
    with pytest.raises(ValueError, match="distinct features"):
        Mode.parse("body->body")
    with pytest.raises(ValueError, match="SOURCES->TARGET"):
        Mode.parse("docstring")
    with pytest.raises(ValueError):
        ExampleSettings(mode_weights={"code->docstring": 1.0})


def test_docstring_target_styles():
    assert target_style("google", ask_summary=False) == "google"
    assert target_style("google", ask_summary=True) == "summary"
    assert target_style("other", ask_summary=False) == "author"
    assert target_style("summary", ask_summary=False) == "summary"


def test_translation_example_layout():
    tokens = {
        "signature": [20, 21],
        "docstring": [30, 31, NEWLINE, 32],
        "summary": [30, 31],
        "body": [40, 41, NEWLINE, 42],
        "class": [],
        "decorators": [],
        "imports": [],
    }
    mode = Mode(("signature", "body"), "docstring")
    source, target = build_translation(tokens, mode, "summary", VOCAB, ExampleSettings())
    assert source == [11, 13, 3, 20, 21, 5, 40, 41, NEWLINE, 42, 1]
    assert target == [30, 31, 1]
    source, target = build_translation(
        tokens, Mode(("docstring",), "body"), None, VOCAB, ExampleSettings()
    )
    assert source == [12, 4, 30, 31, NEWLINE, 32, 1]
    assert target == [40, 41, NEWLINE, 42, 1]


def test_name_words_follow_a_source_signature_only_when_asked():
    tokens = {
        "signature": [20, 21],
        "names": [NEWLINE, 50, 51],
        "summary": [30],
        "body": [40, 41],
        "docstring": [30],
    }
    with_names = ExampleSettings(name_words=True)
    mode = Mode(("signature", "body"), "docstring")
    source, _ = build_translation(tokens, mode, "summary", VOCAB, with_names)
    assert source == [11, 13, 3, 20, 21, NEWLINE, 50, 51, 5, 40, 41, 1]
    source, _ = build_translation(tokens, mode, "summary", VOCAB, ExampleSettings())
    assert source == [11, 13, 3, 20, 21, 5, 40, 41, 1]
    # The names come from the signature: never a hint when the signature is the target.
    source, _ = build_translation(tokens, Mode(("body",), "signature"), None, VOCAB, with_names)
    assert source == [10, 5, 40, 41, 1]
    # They are part of the signature's budget and cut with it, at a line break.
    tight = ExampleSettings(name_words=True, max_source_tokens=16)
    long_tokens = {**tokens, "signature": list(range(20, 31))}
    source, _ = build_translation(long_tokens, Mode(("signature",), "body"), None, VOCAB, tight)
    assert source == [12, 3, *range(20, 31), 1]


@pytest.mark.parametrize(
    ("signature", "names"),
    [
        ("def save_act(self, path=None):", "\n# save act (path)"),
        (
            "async def getHTTPResponse(cls, /, code: int = 2, *args, key, **kw) -> str:",
            "\n# get http response (code, args, key, kw)",
        ),
        ("    def run(\n        self,\n        jobs,\n    ):", "\n# run (jobs)"),
        ("def f():", "\n# f"),
        ("def broken(a, b", "\n# broken"),  # no parse: the name alone
        ("def deep(a=" + "(" * 10**5 + ")" * 10**5 + "):", "\n# deep"),  # too deep to parse
        ("def _(x):", "\n# (x)"),
        ("def __(self):", ""),
        ("class Point:", ""),
        ("", ""),
    ],
)
def test_signature_names_spell_names_as_words(signature, names):
    assert signature_names(signature) == names


def test_long_sources_are_cut_by_priority_never_the_control_code():
    tokens = {
        "signature": list(range(20, 28)),
        "docstring": [],
        "summary": [],
        "body": [50, 51, NEWLINE, 52, 53, NEWLINE, 54, 55, NEWLINE] * 10,
        "class": [60, 61],
        "decorators": [],
        "imports": [],
    }
    settings = ExampleSettings(max_source_tokens=16, max_target_tokens=8, context=True)
    source, target = build_translation(
        tokens, Mode(("signature", "body"), "docstring"), "summary", VOCAB, settings
    )
    # 16 = control (2) + 3 markers + </s> + 10 feature tokens: the signature's 8 first, then
    # 2 of the body (whole lines), none of the class, whose marker stays.
    assert source == [11, 13, 6, 3, *range(20, 28), 5, 50, 51, 1]
    source, target = build_translation(tokens, Mode(("signature",), "body"), None, VOCAB, settings)
    assert target == [50, 51, NEWLINE, 52, 53, 1]


def test_cut_at_line_keeps_whole_lines():
    ids = [1, 2, NEWLINE, 3, 4, NEWLINE, 5]
    assert cut_at_line(ids, 10, frozenset({NEWLINE})) == ids
    assert cut_at_line(ids, 6, frozenset({NEWLINE})) == [1, 2, NEWLINE, 3, 4]
    assert cut_at_line(ids, 4, frozenset({NEWLINE})) == [1, 2]
    assert cut_at_line([1, 2, 3, 4], 2, frozenset({NEWLINE})) == [1, 2]


def test_span_masking_hand_worked():
    ids = [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    source, target = apply_span_mask(ids, mask, VOCAB)
    assert source == [20, 21, 100, 24, 25, 26, 101, 28, 29, 1]
    assert target == [100, 22, 23, 101, 27, 1]


def test_noise_mask_matches_density_and_span_count():
    mask = noise_mask(100, 0.15, 3.0, np.random.default_rng(0))
    assert mask.sum() == 15
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
    assert len(starts) == 5 and not mask[0]
    assert (noise_mask(100, 0.15, 3.0, np.random.default_rng(0)) == mask).all()


def test_span_masking_with_fixed_seed():
    ids = list(range(20, 40))
    source, target = build_span_masking(ids, VOCAB, ExampleSettings(), np.random.default_rng(0))
    # 20 tokens: 3 noise tokens in one span
    assert source[-1] == 1 and target[-1] == 1
    assert sum(t >= 100 for t in source) == 1 and len(target) == 3 + 1 + 1
    # the spans put back where their sentinels stand give the input again
    restored, spans = [], {}
    current = None
    for token in target[:-1]:
        if token >= 100:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    for token in source[:-1]:
        restored.extend(spans[token] if token >= 100 else [token])
    assert restored == ids


def test_feature_texts_of_a_method_in_a_class():
    texts = feature_texts(
        {
            "signature": "def push(self, item):",
            "docstring": "Push an item.\n\nMore words.",
            "body": "    self.items.append(item)",
            "class_name": "Stack",
            "class_bases": ["Base"],
            "class_docstring": "A stack.\n\nDetails.",
            "decorators": ["cached"],
            "imports": ["import os"],
        }
    )
    assert texts["summary"] == "Push an item."
    assert texts["class"] == 'class Stack(Base):\n    """A stack."""'
    assert texts["decorators"] == "@cached" and texts["imports"] == "import os"


@pytest.mark.parametrize("stage", ["multimode", "pretrain"])
def test_examples_command_prints_text_and_tokens(
    small_corpus, small_tokenizer, tmp_path, capsys, stage
):
    from codemt.cli import main
    from codemt.tokenizer import save_tokenizer

    save_tokenizer(small_tokenizer, tmp_path / "tok")
    code = main(
        [
            "examples",
            str(small_corpus),
            "--tokenizer",
            str(tmp_path / "tok"),
            "--n",
            "3",
            "--stage",
            stage,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.count("=== example") == 3
    assert out.count("--- source tokens") == 3 and "</s>" in out
    if stage == "multimode":
        assert "<to_" in out
    else:
        assert "<extra_id_0>" in out


def test_examples_command_explains_bad_input(small_corpus, small_tokenizer, tmp_path, capsys):
    from codemt.cli import main
    from codemt.tokenizer import save_tokenizer

    save_tokenizer(small_tokenizer, tmp_path / "tok")
    tok = str(tmp_path / "tok")
    assert main(["examples", str(small_corpus), "--tokenizer", tok, "--mode", "body-"]) == 2
    assert "expected SOURCES->TARGET" in capsys.readouterr().err
    assert main(["examples", str(tmp_path / "none"), "--tokenizer", tok]) == 2
    assert "no corpus manifest" in capsys.readouterr().err
    args = ["examples", str(small_corpus), "--tokenizer", tok, "--mode", "signature->body"]
    assert main([*args, "--name-words"]) == 0
    with_names = capsys.readouterr().out
    assert main(args) == 0
    assert with_names.count("\n# ") > capsys.readouterr().out.count("\n# ")


@pytest.mark.parametrize(
    "settings", [ExampleSettings(), ExampleSettings(noise_density=0.3, mean_noise_span=1.5)]
)
def test_span_counts_are_the_lengths_span_masking_builds(settings):
    """The planned lengths of span masking, for one length or many at once, are those of
    the examples built."""
    lengths = np.arange(0, 400)
    sources, targets = span_counts(lengths, settings)
    for length, planned_source, planned_target in zip(lengths, sources, targets, strict=True):
        rng = np.random.default_rng(int(length))
        source, target = build_span_masking(list(range(500, 500 + length)), VOCAB, settings, rng)
        assert (len(source), len(target)) == (planned_source, planned_target)
        assert tuple(int(n) for n in span_counts(int(length), settings)) == (
            len(source),
            len(target),
        )
