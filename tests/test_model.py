"""Tests of the model presets and the checkpoint folder: sizes, the T5 v1.1 layout, and a
round trip through our loader and transformers' AutoModelForSeq2SeqLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from codemt import cli
from codemt.model import (
    CODEMT_FILE,
    INT8_WEIGHTS,
    LATEST_FILE,
    PRESETS,
    build_model,
    load_checkpoint,
    preset_parameters,
    write_model,
)

VOCAB = 300


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(3, VOCAB, (2, 9), generator=g),  # (batch, src_len)
        "attention_mask": torch.ones(2, 9, dtype=torch.long),
        "labels": torch.randint(3, VOCAB, (2, 5), generator=g),  # (batch, tgt_len)
    }


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    """Stands in for a tokenizer folder: the checkpoint copies its tokenizer files."""
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_have_their_nominal_size(name):
    preset = PRESETS[name]
    count = preset_parameters(name)  # built on the meta device: nothing is allocated
    assert abs(count - preset.nominal_params) <= 0.05 * preset.nominal_params, count
    if name == "tiny":
        assert count < 1_000_000


def test_vocabulary_size_moves_the_count_by_two_embeddings():
    d_model = PRESETS["small"].d_model
    assert (
        preset_parameters("small", 20_000) - preset_parameters("small", 10_000)
        == 2 * 10_000 * d_model
    )


def test_model_is_t5_v1_1(batch):
    torch.manual_seed(0)
    model = build_model("tiny", VOCAB, pad_id=0, eos_id=1, decoder_start_id=0)
    config = model.config
    assert config.feed_forward_proj == "gated-gelu" and config.dropout_rate == 0.0
    assert model.lm_head.weight is not model.shared.weight  # untied output projection
    assert model.encoder.embed_tokens.weight is model.shared.weight
    assert model.decoder.embed_tokens.weight is model.shared.weight
    assert model.encoder.block[0].layer[0].SelfAttention.has_relative_attention_bias
    # Unit-scale initial logits: the first loss is about that of a uniform guess.
    loss = model(**batch).loss.item()
    assert abs(loss - math.log(VOCAB)) < 1.0, loss


def test_checkpoint_round_trip(tmp_path, tokenizer_dir, batch):
    torch.manual_seed(0)
    model = build_model("tiny", VOCAB, pad_id=0, eos_id=1, decoder_start_id=0).eval()
    folder = tmp_path / "checkpoint"
    write_model(model, folder, tokenizer_dir, {"preset": "tiny", "stage": "pretrain"})
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / CODEMT_FILE).read_text())
    assert meta["preset"] == "tiny" and "codemt_version" in meta

    expected = model(**batch).logits
    ours = load_checkpoint(folder)
    assert ours.meta["stage"] == "pretrain" and ours.tokenizer_path.is_file()
    torch.testing.assert_close(ours.model(**batch).logits, expected, rtol=0, atol=0)
    theirs = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    assert theirs.lm_head.weight is not theirs.shared.weight
    torch.testing.assert_close(theirs(**batch).logits, expected, rtol=0, atol=0)

    # A run folder opens through its `latest` pointer.
    (tmp_path / LATEST_FILE).write_text("checkpoint\n")
    assert load_checkpoint(tmp_path).path == folder


@pytest.mark.parametrize("copy", [False, True])
def test_int8_weights_are_half_the_size_and_compute_nearly_the_same(
    tmp_path, tokenizer_dir, batch, copy
):
    torch.manual_seed(0)
    excluded = [0, 1] if copy else None
    model = build_model("tiny", VOCAB, 0, 1, 0, copy_excluded_ids=excluded).eval()
    half, int8 = tmp_path / "half", tmp_path / "int8"
    meta = {"preset": "tiny", "stage": "multimode"}
    write_model(model.half(), half, tokenizer_dir, meta)
    write_model(model.float(), int8, tokenizer_dir, meta, int8=True)
    assert not (int8 / "model.safetensors").exists()
    assert (int8 / INT8_WEIGHTS).stat().st_size < 0.6 * (half / "model.safetensors").stat().st_size

    loaded = load_checkpoint(int8).model
    assert type(loaded) is type(model) and next(loaded.parameters()).dtype == torch.float32
    assert loaded.lm_head.weight is not loaded.shared.weight
    assert loaded.encoder.embed_tokens.weight is loaded.shared.weight
    expected = model.float()(**batch).logits.log_softmax(-1)
    got = loaded(**batch).logits.log_softmax(-1)
    # Per-row 8 bits: log-probabilities a few hundredths of a nat off, even at a width of 64.
    error = (got - expected).abs()
    assert error.mean() < 0.02 and error.max() < 0.2, (error.mean(), error.max())
    assert not torch.equal(got, expected)  # it is quantized


def test_a_checkpoint_lends_only_its_tokenizer_files(tmp_path, tokenizer_dir, batch):
    torch.manual_seed(0)
    first = build_model("tiny", VOCAB, 0, 1, 0).eval()
    write_model(first, tmp_path / "first", tokenizer_dir, {"preset": "tiny"})
    (tmp_path / "first" / "words.txt").write_text("alpha\n")
    second = build_model("tiny", VOCAB, 0, 1, 0).eval()
    # A checkpoint folder as the tokenizer folder (as `--tokenizer RUN/step-N` gives).
    write_model(second, tmp_path / "second", tmp_path / "first", {"preset": "tiny"})
    assert (tmp_path / "second" / "words.txt").read_text() == "alpha\n"
    loaded = load_checkpoint(tmp_path / "second").model
    torch.testing.assert_close(loaded(**batch).logits, second(**batch).logits, rtol=0, atol=0)


def test_int8_weights_of_another_model_are_refused(tmp_path, tokenizer_dir):
    small = build_model("tiny", VOCAB, 0, 1, 0)
    write_model(small, tmp_path / "a", tokenizer_dir, {"preset": "tiny"}, int8=True)
    other = build_model("tiny", VOCAB, 0, 1, 0, copy_excluded_ids=[0, 1])
    write_model(other, tmp_path / "b", tokenizer_dir, {"preset": "tiny"}, int8=True)
    (tmp_path / "b" / INT8_WEIGHTS).replace(tmp_path / "a" / INT8_WEIGHTS)
    with pytest.raises(ValueError, match="do not fit the model of config.json"):
        load_checkpoint(tmp_path / "a")

    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "a" / INT8_WEIGHTS)
    del weights["lm_head.weight.int8_scale"]
    save_file(weights, tmp_path / "a" / INT8_WEIGHTS)
    with pytest.raises(ValueError, match="8-bit weight lm_head.weight has no scales"):
        load_checkpoint(tmp_path / "a")


def test_load_checkpoint_explains_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a codemt checkpoint"):
        load_checkpoint(tmp_path)


def test_presets_command(capsys):
    assert cli.main(["presets", "--vocab-size", "1024"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"{preset_parameters(name, 1024):,}" in out
