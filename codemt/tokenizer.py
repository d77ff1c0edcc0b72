"""The tokenizer: byte-level BPE (GPT-2 style) extended with single tokens for whitespace runs.

As in PyMT5, a byte-level BPE is trained on Python source and docstrings, then extended so
that indentation costs one token. Every string round-trips losslessly:
``tok.decode(tok.encode(s).ids, skip_special_tokens=False) == s``.

How the whitespace tokens work. They are *added tokens* (``normalized=False``, not special),
which `tokenizers` cuts out of the raw text, longest match first, before the GPT-2
pre-tokenizer and BPE ever see it. So ``"\\n        return x"`` is ``["\\n        ", "return",
"Ġx"]`` whatever BPE learned. Training text is cut at the same places (`_split_at_added`), so
BPE spends no merges on whitespace and learns the words that follow an indentation without a
leading space, as they are met at encoding time. The set was chosen by measurement on the
standard library (`benchmarks/tokenizer_roundtrip.py`): one or two newlines followed by 1..48
spaces or 1..12 tabs (every width, not only multiples of four, since hanging indents and
docstring continuations align to any column; two newlines because a blank line before an
indented statement is common), and runs of 2..32 spaces or 2..12 tabs inside a line. Carriage
returns get no whitespace tokens: ``"\\r\\n    "`` is ``"\\r"`` then ``"\\n    "``, still lossless.
A BPE trained on code learns the common indentations by itself, so on space-indented code the
gain is small (0.1% fewer tokens per method at 8192); what the tokens buy is the guarantee for
indentation unseen in training (12% fewer tokens on tab-indented methods).

Special tokens (padding, end of sequence, feature markers, control codes, style codes and the
T5 span-masking sentinels) have one id each and come first in the vocabulary, so ``<pad>`` is
0, ``</s>`` 1 and ``<unk>`` 2, as in T5. They are matched anywhere in the text: a docstring
that contains the literal text ``<to_body>`` encodes it as the control code (and decoding
gives the text back). Callers that must keep such text literal set
``tok.encode_special_tokens = True`` while encoding user text and insert control codes by id.
No ``</s>`` is appended on encoding; whoever builds model inputs adds it, which keeps
encode/decode a plain round trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from codemt import corpus
from codemt.source.extract import method_source

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
# Byte-level BPE can encode any text, so <unk> is never produced; it exists because
# transformers' T5 conventions expect an unk token with id 2.
UNK_TOKEN = "<unk>"

# Precede each feature of the model's input, keyed by feature name.
FEATURE_TOKENS = {
    "signature": "<signature>",
    "docstring": "<docstring>",
    "body": "<body>",
    "class": "<class>",
    "decorators": "<decorators>",
    "imports": "<imports>",
}
# Tell the model which feature to produce.
TARGET_TOKENS = {
    "signature": "<to_signature>",
    "docstring": "<to_docstring>",
    "body": "<to_body>",
}
# Ask for a docstring style; "author" means the style the method's author used.
STYLE_TOKENS = {
    "summary": "<style_summary>",
    "google": "<style_google>",
    "numpy": "<style_numpy>",
    "rest": "<style_rest>",
    "author": "<style_author>",
}
# T5 span-masking sentinels, named as transformers' T5 tokenizers name them.
NUM_SENTINELS = 100
SENTINEL_TOKENS = tuple(f"<extra_id_{i}>" for i in range(NUM_SENTINELS))

# In id order: <pad> = 0, </s> = 1, <unk> = 2, then the rest.
SPECIAL_TOKENS = (
    PAD_TOKEN,
    EOS_TOKEN,
    UNK_TOKEN,
    *FEATURE_TOKENS.values(),
    *TARGET_TOKENS.values(),
    *STYLE_TOKENS.values(),
    *SENTINEL_TOKENS,
)

TOKENIZER_FILE = "tokenizer.json"
# What `save_tokenizer` writes, and all of a tokenizer folder that a checkpoint copies.
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json")
BYTE_ALPHABET_SIZE = 256
# Files that let `transformers.AutoTokenizer.from_pretrained(DIR)` open a saved tokenizer.
_TRANSFORMERS_CONFIG = {
    "pad_token": PAD_TOKEN,
    "eos_token": EOS_TOKEN,
    "unk_token": UNK_TOKEN,
    "additional_special_tokens": [
        t for t in SPECIAL_TOKENS if t not in (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
    ],
}


@dataclass(frozen=True)
class TokenizerSettings:
    """How to train the tokenizer.

    Attributes:
        vocab_size: total vocabulary size, special and whitespace tokens included.
        min_frequency: a pair of symbols must occur this often to be merged.
        max_indent: newline(s) followed by 1..max_indent spaces are single tokens.
        max_tab_indent: newline(s) followed by 1..max_tab_indent tabs are single tokens.
        max_space_run: runs of 2..max_space_run spaces are single tokens (0 or 1: none).
        max_tab_run: runs of 2..max_tab_run tabs are single tokens (0 or 1: none).
    """

    vocab_size: int = 32_768
    min_frequency: int = 2
    max_indent: int = 48
    max_tab_indent: int = 12
    max_space_run: int = 32
    max_tab_run: int = 12

    def __post_init__(self) -> None:
        for name in ("max_indent", "max_tab_indent", "max_space_run", "max_tab_run"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency must be at least 1, got {self.min_frequency}")
        fixed = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS) + len(whitespace_tokens(self))
        if self.vocab_size <= fixed:
            raise ValueError(
                f"vocab_size {self.vocab_size} is too small: the 256 bytes, "
                f"{len(SPECIAL_TOKENS)} special tokens and {len(whitespace_tokens(self))} "
                f"whitespace tokens alone take {fixed}; use a vocab_size well above that "
                f"(e.g. 8192 or more)"
            )


def whitespace_tokens(settings: TokenizerSettings) -> list[str]:
    """The whitespace runs that are single tokens under `settings`."""
    indents = [" " * n for n in range(1, settings.max_indent + 1)]
    indents += ["\t" * n for n in range(1, settings.max_tab_indent + 1)]
    tokens = [newlines + indent for newlines in ("\n", "\n\n") for indent in indents]
    tokens += [" " * n for n in range(2, settings.max_space_run + 1)]
    tokens += ["\t" * n for n in range(2, settings.max_tab_run + 1)]
    return tokens


def _split_at_added(texts: Iterable[str], added: Iterable[str]) -> Iterator[str]:
    """Cut texts at the added tokens, as `tokenizers` does before BPE at encoding time.

    Trying the alternatives longest first at each position reproduces the leftmost-longest
    matching of `tokenizers`, so training sees the same pieces as encoding does.
    """
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    for text in texts:
        yield from (piece for piece in pattern.split(text) if piece)


def train_tokenizer(texts: Iterable[str], settings: TokenizerSettings) -> Tokenizer:
    """Train the byte-level BPE with whitespace and special tokens on `texts`.

    The vocabulary has `settings.vocab_size` entries when the texts hold enough distinct
    pairs to merge (fewer otherwise): special tokens first, then bytes and merges, then the
    whitespace tokens.
    """
    spaces = whitespace_tokens(settings)
    tok = Tokenizer(models.BPE())
    # No normalizer: any normalisation (NFC, stripping) would break lossless round trips.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size - len(spaces),
        min_frequency=settings.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_split_at_added(texts, [*spaces, *SPECIAL_TOKENS]), trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in spaces])
    return tok


def corpus_texts(corpus_dir: Path, limit: int | None = None) -> Iterator[str]:
    """Stream training texts from the train split of a corpus: each method's source, then
    its docstring when it has one; at most `limit` methods."""
    count = 0
    columns = ["signature", "docstring", "body"]
    for batch in corpus.iter_batches(Path(corpus_dir), "train", columns):
        for record in batch.to_pylist():
            if limit is not None and count >= limit:
                return
            count += 1
            yield method_source(record, with_docstring=False)
            if record["docstring"]:
                yield record["docstring"]


def python_file_texts(root: Path, limit: int | None = None) -> Iterator[str]:
    """Stream the `.py` files under `root` in a stable order; at most `limit` files.

    Files that are not UTF-8 are skipped: they are rare, and guessing their encoding could
    teach the tokenizer mojibake.
    """
    count = 0
    for path in sorted(Path(root).rglob("*.py")):
        if limit is not None and count >= limit:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        count += 1
        yield text


def bytes_per_token(tok: Tokenizer, texts: list[str]) -> float:
    """UTF-8 bytes per token over `texts` (higher is better compression)."""
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return n_bytes / max(n_tokens, 1)


def special_token_id(tok: Tokenizer, token: str) -> int:
    """The id of a special token, or a ValueError saying the tokenizer lacks it."""
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise ValueError(
            f"the tokenizer has no token {token!r}; it was not made by this version of "
            f"codemt: train a new one with `codemt tokenizer train`"
        )
    return token_id


def save_tokenizer(tok: Tokenizer, out_dir: Path) -> Path:
    """Write `tokenizer.json` and the transformers config files into `out_dir`; return the
    path of `tokenizer.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TOKENIZER_FILE
    tok.save(str(path))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        # Cleaning up spaces around punctuation would break lossless decoding.
        "clean_up_tokenization_spaces": False,
        **_TRANSFORMERS_CONFIG,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(_TRANSFORMERS_CONFIG, indent=2), "utf-8"
    )
    return path


def load_tokenizer(path: Path | str) -> Tokenizer:
    """Load a tokenizer from its `tokenizer.json` or the folder holding it."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no tokenizer here; train one with "
            f"`codemt tokenizer train DATA --vocab-size N --out DIR`"
        )
    return Tokenizer.from_file(str(file))


# Every HOLD_OUT_EVERY-th text, up to MAX_HELD_OUT texts, is kept out of training to
# measure compression on text the tokenizer has not seen.
HOLD_OUT_EVERY = 50
MAX_HELD_OUT = 1000
