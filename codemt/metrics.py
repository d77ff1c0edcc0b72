"""The text metrics of codemt's evaluations, in percent (0-100).

- `smoothed_bleu4`: CodeXGLUE code-to-text's smoothed sentence BLEU-4, averaged over
  sentences, as its `bleu.py` defines it (Lin & Och 2004 smoothing): text lower-cased,
  words and punctuation split apart, then NIST-normalised; add-one smoothing of the
  n-gram precisions for n > 1; brevity penalty min(0, 1 - (r + 1) / (c + 1)) in log space.
  Written from the definition; tests pin hand-worked values.
- `bleu`: corpus BLEU (sacrebleu, its default 13a tokenisation).
- `rouge{1,2,L}_{p,r,f}`: ROUGE precision, recall and F (rouge-score with its defaults:
  lower-cased words, no stemming), averaged over sentences.
- `exact_match`: prediction and reference equal up to whitespace.
"""

from __future__ import annotations

import math
import re
import sys
import xml.sax.saxutils
from collections import Counter
from collections.abc import Sequence

MAX_ORDER = 4
# The metrics of one set of predictions, in the order tables show them.
TEXT_METRICS = (
    "smoothed_bleu4",
    "bleu",
    *(f"rouge{k}_{m}" for k in ("1", "2", "L") for m in ("p", "r", "f")),
    "exact_match",
)

# ------------------------------------------------------------------ smoothed BLEU-4

# CodeXGLUE splits words from punctuation first ...
_WORDS_AND_PUNCTUATION = re.compile(r"\w+|[^\s\w]")
# ... then normalises as NIST's mteval-v11a.pl does (their `normalize`).
_NIST_JOIN = [(re.compile("<skipped>"), ""), (re.compile(r"-\n"), ""), (re.compile(r"\n"), " ")]
_NIST_SPLIT = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation but apostrophes
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period and comma unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period and comma unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]


def bleu_tokens(text: str) -> list[str]:
    """The tokens CodeXGLUE's BLEU counts n-grams over."""
    text = " ".join(_WORDS_AND_PUNCTUATION.findall(text.strip().lower()))
    for pattern, replacement in _NIST_JOIN:
        text = pattern.sub(replacement, text)
    text = xml.sax.saxutils.unescape(text, {"&quot;": '"'})
    text = f" {text} ".lower()
    for pattern, replacement in _NIST_SPLIT:
        text = pattern.sub(replacement, text)
    return text.split()


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def sentence_smoothed_bleu(prediction: str, reference: str) -> float:
    """CodeXGLUE's smoothed BLEU-4 of one sentence against one reference, in [0, 1].

    As in the definition, `sys.float_info.min` keeps log(0) finite (a sentence without any
    matching word scores about 1e-77, not 0), and an empty prediction scores exp(-r).
    """
    hypothesis, ref = bleu_tokens(prediction), bleu_tokens(reference)
    tiny = sys.float_info.min
    log_precision = 0.0
    for n in range(1, MAX_ORDER + 1):
        ref_counts = _ngrams(ref, n)
        correct = sum(min(c, ref_counts[g]) for g, c in _ngrams(hypothesis, n).items())
        guess = max(len(hypothesis) - n + 1, 0)
        smooth = 1 if n > 1 else 0
        log_precision += math.log(correct + smooth + tiny) - math.log(guess + smooth + tiny)
    brevity = min(0.0, 1 - (len(ref) + 1) / (len(hypothesis) + 1))
    return math.exp(log_precision / MAX_ORDER + brevity)


def smoothed_bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """CodeXGLUE's smoothed BLEU-4: the sentence scores' mean, in percent."""
    scores = [sentence_smoothed_bleu(p, r) for p, r in zip(predictions, references, strict=True)]
    return 100 * sum(scores) / len(scores) if scores else 0.0


# ------------------------------------------------------------------ all text metrics


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L precision, recall and F (rouge-score, no stemming), sentence means in percent."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    totals: Counter[str] = Counter()
    for prediction, reference in zip(predictions, references, strict=True):
        for kind, score in scorer.score(reference, prediction).items():
            name = kind.removeprefix("rouge")
            totals[f"rouge{name}_p"] += score.precision
            totals[f"rouge{name}_r"] += score.recall
            totals[f"rouge{name}_f"] += score.fmeasure
    n = max(len(predictions), 1)
    return {key: 100 * value / n for key, value in totals.items()}


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Percentage of predictions equal to their reference up to whitespace."""
    same = [p.split() == r.split() for p, r in zip(predictions, references, strict=True)]
    return 100 * sum(same) / len(same) if same else 0.0


def score_texts(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every text metric of predictions against references (one reference each)."""
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; "
            f"give one reference per prediction"
        )
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    metrics: dict[str, float] = {"n": len(predictions)}
    metrics["smoothed_bleu4"] = smoothed_bleu4(predictions, references)
    metrics["bleu"] = sacrebleu.corpus_bleu(list(predictions), [list(references)]).score
    metrics |= rouge(predictions, references)
    metrics["exact_match"] = exact_match(predictions, references)
    return metrics
