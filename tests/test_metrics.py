"""The text metrics: CodeXGLUE's smoothed BLEU-4 on hand-worked sentences, ROUGE as
rouge-score computes it, exact match and the whole set in percent."""

import math

import pytest

from codemt.metrics import (
    TEXT_METRICS,
    bleu_tokens,
    exact_match,
    rouge,
    score_texts,
    sentence_smoothed_bleu,
    smoothed_bleu4,
)

MODE_METRICS = {"n", *TEXT_METRICS}


# ------------------------------------------------------------------ smoothed BLEU-4


def test_bleu_tokens_lower_case_and_split_punctuation():
    assert bleu_tokens("Returns a dict-like Object (see `foo.bar`).") == [
        "returns", "a", "dict", "-", "like", "object", "(", "see", "`", "foo", ".", "bar", "`",
        ")", ".",
    ]  # fmt: skip
    assert bleu_tokens("  ") == []


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # Identical: every precision 1 (add-one smoothing keeps empty orders at 1/1).
        ("returns the sum of a and b", "returns the sum of a and b", 1.0),
        ("hello world", "hello world", 1.0),
        # Case and punctuation do not matter.
        ("Returns the Sum.", "returns the sum .", 1.0),
        # Precisions 1, brevity penalty exp(1 - (6 + 1) / (3 + 1)).
        ("the cat sat", "the cat sat on the mat", math.exp(-0.75)),
        # p1 = 5/6; smoothed p2 = (3+1)/(5+1), p3 = (2+1)/(4+1), p4 = (1+1)/(3+1); no penalty.
        (
            "returns the sum of two numbers",
            "returns the sum of the numbers",
            (5 / 6 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25,
        ),
        # Longer than the reference: p = 6/7, 6/7, 5/6, 4/5 and no penalty.
        ("the cat sat on the mat today", "the cat sat on the mat", (24 / 49) ** 0.25),
        # The definition's corner: an empty prediction has no n-grams (log 1 for every order)
        # and brevity penalty 1 - (3 + 1) / 1.
        ("", "returns the sum", math.exp(-3)),
    ],
)
def test_smoothed_bleu_of_hand_worked_sentences(prediction, reference, expected):
    assert sentence_smoothed_bleu(prediction, reference) == pytest.approx(expected, rel=1e-12)


def test_smoothed_bleu_without_a_common_word_is_next_to_zero():
    # log(0 + sys.float_info.min) in the unigram term: about 1e-77, as in the definition.
    assert 0 < sentence_smoothed_bleu("the cat", "a dog") < 1e-70


def test_smoothed_bleu4_is_the_mean_of_sentences_in_percent():
    predictions = ["the cat sat", "returns the sum"]
    references = ["the cat sat on the mat", "returns the sum"]
    assert smoothed_bleu4(predictions, references) == pytest.approx(
        100 * (math.exp(-0.75) + 1.0) / 2
    )


# ------------------------------------------------------------------ the other metrics


def test_rouge_matches_rouge_score():
    from rouge_score import rouge_scorer

    predictions = ["returns the sum of two numbers", "Open the file.", ""]
    references = ["Return the sum of the numbers.", "open a file and read it", "anything"]
    ours = rouge(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    for kind in ("rouge1", "rouge2", "rougeL"):
        for short, field in (("p", "precision"), ("r", "recall"), ("f", "fmeasure")):
            expected = 100 * sum(getattr(s[kind], field) for s in scores) / len(scores)
            assert ours[f"{kind}_{short}"] == pytest.approx(expected)


def test_score_texts_reports_every_metric_in_percent():
    import sacrebleu

    predictions = ["returns the sum", "open  the file", "close it"]
    references = ["returns the sum", "open the file", "closes the stream"]
    metrics = score_texts(predictions, references)
    assert set(metrics) == MODE_METRICS
    assert metrics["n"] == 3
    assert metrics["exact_match"] == pytest.approx(200 / 3)  # whitespace does not count
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert all(0 <= v <= 100 for k, v in metrics.items() if k != "n")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_texts(["a", "b"], ["a"])


def test_bleu_tokens_lower_case_as_python_does_not_by_way_of_upper_case():
    # "ß".upper() is "SS": lower-casing must come first, as in CodeXGLUE's bleu.py.
    assert bleu_tokens("Straße") == ["straße"]
    # Entities are split apart before NIST's unescaping, as in bleu.py: they stay text.
    assert bleu_tokens("Say &quot;hi&quot;") == ["say", "&", "quot", ";", "hi", "&", "quot", ";"]


@pytest.mark.parametrize("metric", [smoothed_bleu4, rouge, exact_match])
def test_every_metric_refuses_predictions_and_references_of_other_lengths(metric):
    with pytest.raises(ValueError):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        metric(["a"], ["a", "b"])


def test_nothing_scores_zero_and_one_sentence_is_its_own_mean():
    assert smoothed_bleu4([], []) == 0.0 and exact_match([], []) == 0.0
    assert rouge([], []) == {}
    one = rouge(["returns the sum"], ["returns the sum"])
    assert one["rouge1_f"] == one["rouge2_p"] == one["rougeL_r"] == pytest.approx(100)
    assert exact_match(["a  b"], ["a b"]) == 100.0 and exact_match(["a"], ["b"]) == 0.0
    assert smoothed_bleu4(["hello world"], ["hello world"]) == pytest.approx(100)
    with pytest.raises(ValueError, match="nothing to score: no predictions"):
        score_texts([], [])
