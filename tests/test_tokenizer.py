"""Tests of the byte-level BPE tokenizer: lossless round trips, whitespace and special tokens,
saving and loading (ours and transformers'), and the `codemt tokenizer train` command."""

from __future__ import annotations

import argparse
import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codemt import corpus, tokenizer
from codemt.cli import tokenizer as tokenizer_cli
from codemt.tokenizer import (
    EOS_TOKEN,
    FEATURE_TOKENS,
    PAD_TOKEN,
    SENTINEL_TOKENS,
    SPECIAL_TOKENS,
    TARGET_TOKENS,
    UNK_TOKEN,
    TokenizerSettings,
    load_tokenizer,
    save_tokenizer,
    special_token_id,
    train_tokenizer,
)

VOCAB_SIZE = 2048


def stdlib_sources(count: int, offset: int) -> list[str]:
    """`count` standard-library sources spread evenly over the sorted file list."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [p for p in sorted(root.rglob("*.py")) if "site-packages" not in p.parts]
    step = max(len(paths) // count, 1)
    texts = []
    for path in paths[offset::step][:count]:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(stdlib_sources(40, offset=1), TokenizerSettings(vocab_size=VOCAB_SIZE))


def round_trip(tok, text: str) -> str:
    return tok.decode(tok.encode(text).ids, skip_special_tokens=False)


def write_tiny_corpus(corpus_dir: Path) -> list[dict]:
    # Defaults by type, so the test follows columns that the miner adds.
    defaults = {pa.string(): "", pa.int32(): 0, pa.bool_(): False}
    empty = {f.name: defaults.get(f.type, []) for f in corpus.SCHEMA}
    records = [
        {
            **empty,
            "name": f"f{i}",
            "split": "train",
            "signature": f"def f{i}(x, y):",
            "docstring": f"Add {i} to x.\n\nArgs:\n    x: a number." if i % 2 else "",
            "body": f"    total = x + {i}\n    if total > y:\n        return y\n    return total",
        }
        for i in range(30)
    ]
    corpus.write_table(records, corpus_dir / "shards" / "train-00000.parquet")
    (corpus_dir / "manifest.json").write_text("{}")
    return records


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="vocab_size 300 is too small"):
        TokenizerSettings(vocab_size=300)
    with pytest.raises(ValueError, match="max_indent"):
        TokenizerSettings(max_indent=-1)
    with pytest.raises(ValueError, match="min_frequency"):
        TokenizerSettings(min_frequency=0)


def test_stdlib_files_round_trip(tok):
    texts = stdlib_sources(200, offset=0)
    assert len(texts) > 150
    encodings = tok.encode_batch(texts)
    decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    mismatches = [i for i, (d, t) in enumerate(zip(decoded, texts, strict=True)) if d != t]
    assert not mismatches


PYTHONISH = st.lists(
    st.one_of(
        st.sampled_from(
            ["def", "return", "self", "class", "(", "):", ":", "=", ",", ".", "'", '"""', "#"]
            + [" ", "  ", "\t", "\n", "\r\n", "\n    ", "\n        ", "\n\t", "\n\n    "]
            + ["é", "λ", "中文", "∑", "😀", "\u200b", "\x00", "<", ">", "<to_body>", "<extra_id_3>"]
        ),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=PYTHONISH)
def test_any_text_round_trips(tok, text):
    assert round_trip(tok, text) == text


def test_edge_cases_round_trip(tok):
    for text in [
        "",
        " ",
        "\n",
        "\r\n",
        "x  \n",
        "\t\tx = 'ünïcödé'\r\n",
        " " * 100,
        "\n" + " " * 60,
    ]:
        assert round_trip(tok, text) == text


# Texts that a normalizer (NFC, NFKC, lowercasing, stripping), a changed pre-tokenizer or a
# lost byte fallback would change: fixed, so that such a change fails every time.
EXACT_TEXTS = [
    "\uf900",  # a CJK compatibility ideograph: NFC and NFKC both map it to U+8C48
    "\ufb01le = 1",  # the "fi" ligature: NFKC spells it out
    "x\u00b2",  # superscript two: NFKC makes it "2"
    "e\u0301",  # e + combining acute: NFC makes one character
    "\u00e9",  # precomposed é: NFD splits it
    "a\u0308\u0323\u0301z",  # combining marks in a non-canonical order
    "\u212b",  # the angstrom sign: NFC makes it U+00C5
    "A\x00B",  # NUL
    "x = 1\ry = 2",  # a lone CR
    "x = 1\r\r\ny = 2",
    "a\tb\x0bc\x0cd\x1ce\x1df\x1eg\x85h\xa0i\u1680j\u2000k\u2009l\u200am",
    "\u2028\u2029\u202f\u205f\u3000\ufeff",  # separators, no-break spaces, BOM
    "  trailing  \t ",
    "\n\n\n\t \n",
    "MiXeD CaSe ΣΑΣ straße İ",  # lowercasing or case folding would change these
    "\U0001f600\U0001f468\u200d\U0001f469",  # astral plane, a zero-width joiner sequence
    "\x7f\x01\x1b[0m",  # DEL and control characters
]


@pytest.mark.parametrize("text", EXACT_TEXTS)
def test_texts_a_normalizer_would_change_round_trip_exactly(tok, text):
    assert round_trip(tok, text) == text
    saved = tokenizer.Tokenizer.from_str(tok.to_str())  # the saved form too
    assert saved.decode(saved.encode(text).ids, skip_special_tokens=False) == text


def test_the_tokenizer_has_no_normalizer_and_a_byte_level_decoder(tok):
    config = json.loads(tok.to_str())
    assert config["normalizer"] is None
    assert config["decoder"]["type"] == "ByteLevel"


def test_indentation_is_one_token(tok):
    assert tok.encode("\n        return x").tokens == ["\n        ", "return", "Ġx"]
    for indent in ["\n    ", "\n" + " " * 48, "\n\n        ", "\n\t\t", "  ", "\t\t\t"]:
        ids = tok.encode(indent).ids
        assert ids == [tok.token_to_id(indent)], repr(indent)
    # Deeper than the longest token: two tokens, still lossless.
    assert len(tok.encode("\n" + " " * 52).ids) == 2


def test_special_tokens_are_single_ids_never_split(tok):
    assert [special_token_id(tok, t) for t in (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)] == [0, 1, 2]
    assert len(set(SPECIAL_TOKENS)) == len(SPECIAL_TOKENS) == len(SENTINEL_TOKENS) + 17
    for token in SPECIAL_TOKENS:
        assert tok.encode(token).ids == [special_token_id(tok, token)]
    # Matched anywhere, even glued to text, and decoded back.
    text = f"{FEATURE_TOKENS['signature']}def f():{TARGET_TOKENS['body']}x<extra_id_0>"
    ids = tok.encode(text).ids
    for token in (FEATURE_TOKENS["signature"], TARGET_TOKENS["body"], SENTINEL_TOKENS[0]):
        assert special_token_id(tok, token) in ids
    assert round_trip(tok, text) == text
    with pytest.raises(ValueError, match="no token '<nope>'"):
        special_token_id(tok, "<nope>")


def test_literal_control_code_can_stay_text(tok):
    text = 'Returns the string "<to_body>".'
    tok.encode_special_tokens = True
    try:
        ids = tok.encode(text).ids
    finally:
        tok.encode_special_tokens = False
    assert special_token_id(tok, TARGET_TOKENS["body"]) not in ids
    assert tok.decode(ids, skip_special_tokens=False) == text


def test_save_and_load(tok, tmp_path):
    path = save_tokenizer(tok, tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    for source in (path, path.parent, str(path.parent)):
        assert load_tokenizer(source).get_vocab() == tok.get_vocab()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        load_tokenizer(tmp_path / "missing")


def test_transformers_opens_saved_tokenizer(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    path = save_tokenizer(tok, tmp_path)
    text = "def f(x):\r\n\treturn x  # ünïcode\n<to_docstring>"
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(path), pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN
    )
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for hf in (fast, auto):
        assert (hf.pad_token_id, hf.eos_token_id) == (0, 1)
        ids = hf(text)["input_ids"]
        assert ids == tok.encode(text).ids
        assert hf.decode(ids, clean_up_tokenization_spaces=False) == text
    assert auto.convert_tokens_to_ids(SENTINEL_TOKENS[99]) == special_token_id(
        tok, SENTINEL_TOKENS[99]
    )


def test_corpus_texts(tmp_path):
    records = write_tiny_corpus(tmp_path)
    texts = list(tokenizer.corpus_texts(tmp_path, limit=2))
    assert texts == [
        "def f0(x, y):\n    total = x + 0\n    if total > y:\n        return y\n    return total\n",
        records[1]["signature"] + "\n" + records[1]["body"] + "\n",
        records[1]["docstring"],
    ]


def cli(argv: list[str]) -> int:
    # The top-level parser imports every stage; this one has only ours.
    parser = argparse.ArgumentParser(prog="codemt")
    tokenizer_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["tokenizer", "train", "--help"])
    assert exit_info.value.code == 0
    assert "--vocab-size" in capsys.readouterr().out


@pytest.mark.parametrize("raw", [False, True])
def test_cli_train(tmp_path, capsys, raw):
    data = tmp_path / "data"
    if raw:
        for i, text in enumerate(stdlib_sources(5, offset=2)):
            (data / "pkg").mkdir(parents=True, exist_ok=True)
            (data / "pkg" / f"m{i}.py").write_text(text, encoding="utf-8")
    else:
        write_tiny_corpus(data)
    out = tmp_path / "tok"
    assert cli(["tokenizer", "train", str(data), "--vocab-size", "1024", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocab size:" in printed and "bytes/token on" in printed
    loaded = load_tokenizer(out)
    assert round_trip(loaded, "def f():\n    return 1\n") == "def f():\n    return 1\n"
    assert json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == PAD_TOKEN


def test_cli_rejects_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="no .py files"):
        cli(
            [
                "tokenizer",
                "train",
                str(tmp_path),
                "--vocab-size",
                "1024",
                "--out",
                str(tmp_path / "o"),
            ]
        )
