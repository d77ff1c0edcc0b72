"""Tests of the copy mechanism (`codemt.pointer.PointerT5`): a proper distribution that
never copies special tokens, a plain model's weights kept, generation with its cache, the
checkpoint round trip, training with `copy`, and that it learns to copy where a plain
model of its size cannot yet."""

from __future__ import annotations

import pytest
import torch

from codemt.model import (
    build_model,
    cpu_has_bf16,
    has_pointer,
    load_checkpoint,
    with_pointer,
    write_model,
)
from codemt.pointer import PointerT5

VOCAB = 300
SPECIAL = [0, 1, 2]  # pad, </s>, one control code


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (2, 9), generator=g)
    input_ids[0, 0] = 2  # a control code, as every source starts with
    input_ids[:, -1] = 1  # </s>
    input_ids[1, 6:] = 0  # padding
    attention_mask = (input_ids != 0).long()
    labels = torch.randint(3, VOCAB, (2, 5), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.fixture
def pointer() -> PointerT5:
    torch.manual_seed(0)
    model = build_model("tiny", VOCAB, 0, 1, 0, copy_excluded_ids=SPECIAL)
    assert isinstance(model, PointerT5) and has_pointer(model.config)
    return model.eval()


def test_a_proper_distribution_that_copies_only_real_source_tokens(pointer, batch):
    probs = pointer(**batch).logits.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))

    with torch.no_grad():
        pointer.copy_gate.bias.fill_(-60.0)  # copy only
    probs = pointer(**batch).logits.exp()
    for row in range(2):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        real = set(ids.tolist()) - set(SPECIAL)
        mass = probs[row][:, sorted(real)].sum(-1)
        torch.testing.assert_close(mass, torch.ones(5))
        assert probs[row][:, SPECIAL].max() < 1e-6


def test_training_computes_the_same_loss_and_gradients_at_the_labels_alone(pointer, batch):
    batch = {k: torch.cat([v, v[:1]]) for k, v in batch.items()}  # a third example:
    batch["input_ids"][2, 1:] = 0  # a source with nothing copyable (control code, padding)
    batch["attention_mask"][2, 2:] = 0
    batch["input_ids"][0, 4] = batch["input_ids"][0, 2]  # a token held twice
    batch["labels"][0, 1] = batch["input_ids"][0, 2]  # a label the source holds twice
    batch["labels"][0, 4] = 1  # </s>, never copied
    batch["labels"][1, 3:] = -100  # padding of the targets
    results = {}
    for training in (False, True):
        pointer.train(training)  # dropout is 0: only the loss's path differs
        pointer.zero_grad()
        out = pointer(**batch)
        out.loss.backward()
        assert (out.logits is None) == training
        grads = {n: p.grad.clone() for n, p in pointer.named_parameters() if p.grad is not None}
        results[training] = out.loss.detach(), grads
    torch.testing.assert_close(results[True][0], results[False][0])
    assert results[True][1].keys() == results[False][1].keys()
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=1e-4, atol=1e-6)


def test_label_log_probs_are_the_full_mixture_at_the_labels(pointer, batch):
    with torch.inference_mode():
        full = pointer(**batch).logits
        at_labels = full.gather(-1, batch["labels"][..., None]).squeeze(-1)
        encoded = pointer.get_encoder()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        for outputs in (None, encoded):  # the encoder run inside or given
            picked = pointer.label_log_probs(
                batch["input_ids"], batch["attention_mask"], batch["labels"], outputs
            )
            torch.testing.assert_close(picked, at_labels)


def test_a_plain_model_gains_a_pointer_and_keeps_its_weights(batch):
    torch.manual_seed(0)
    plain = build_model("tiny", VOCAB, 0, 1, 0).eval()
    model = with_pointer(plain, SPECIAL).eval()
    assert isinstance(model, PointerT5) and not has_pointer(plain.config)
    assert with_pointer(model, SPECIAL) is model
    with torch.no_grad():
        model.copy_gate.bias.fill_(60.0)  # generate only
    expected = plain(**batch).logits.log_softmax(-1)
    torch.testing.assert_close(model(**batch).logits, expected, rtol=1e-5, atol=1e-5)
    # As it is made, the gate generates 95% of the time: the loss barely moves.
    model.reset_pointer()
    assert abs(model(**batch).loss.item() - plain(**batch).loss.item()) < 0.06


def test_generation_with_the_cache_matches_the_full_forward(pointer, batch):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    greedy = pointer.generate(**inputs, max_new_tokens=6)  # source_ids: the input_ids
    with torch.no_grad():
        full = pointer(**inputs, decoder_input_ids=greedy[:, :-1]).logits
    assert torch.equal(full.argmax(-1), greedy[:, 1:])

    out = pointer.generate(
        **inputs, num_beams=3, num_return_sequences=2, max_new_tokens=6, length_penalty=0.0,
        return_dict_in_generate=True, output_scores=True,
    )  # fmt: skip
    sequences = out.sequences  # (2 sources x 2 beams, 1 + steps)
    assert sequences.shape[0] == 4
    repeated = {k: v.repeat_interleave(2, 0) for k, v in inputs.items()}
    with torch.no_grad():
        log_probs = pointer(**repeated, decoder_input_ids=sequences[:, :-1]).logits
    steps = log_probs.gather(2, sequences[:, 1:, None])[..., 0]
    real = sequences[:, 1:] != 0
    # length_penalty 0: a beam's score is the sum of its tokens' log-probabilities.
    torch.testing.assert_close(out.sequences_scores, (steps * real).sum(1), rtol=1e-4, atol=1e-4)


def test_beam_search_leaves_the_cross_attention_cache_alone_and_finds_the_same_beams(
    pointer, batch, monkeypatch
):
    """`_reorder_cache` moves the decoder's own keys and values only (every beam of a
    source holds the same cross-attention ones): the beams and scores of transformers'
    full reordering; the pointer's keys of the source are made once and not kept after."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    options = {"num_beams": 4, "num_return_sequences": 4, "max_new_tokens": 12}
    options |= {"return_dict_in_generate": True, "output_scores": True}
    made = []
    keys = PointerT5._source_keys
    monkeypatch.setattr(
        PointerT5,
        "_source_keys",
        lambda self, e: made.append(self._keys is not None and self._keys[0] is e) or keys(self, e),
    )
    ours = pointer.generate(**inputs, **options)
    assert made.count(False) == 1 and len(made) > 5  # made at the first step alone
    assert pointer._keys is None and not pointer._keep_keys
    monkeypatch.delattr(PointerT5, "_reorder_cache")
    monkeypatch.setattr(PointerT5, "_source_keys", keys)
    full = pointer.generate(**inputs, **options)
    assert torch.equal(ours.sequences, full.sequences)
    torch.testing.assert_close(ours.sequences_scores, full.sequences_scores)
    # The beams did move: some returned sequence continues another beam than it began as.
    indices = ours.beam_indices[:, : ours.sequences.shape[1] - 1]
    assert (indices != indices[:, :1]).logical_and(indices >= 0).any()


def test_a_model_in_bfloat16_copies_its_encoder_outputs_to_float32_once_a_generation(
    pointer, batch, monkeypatch
):
    """The outputs come again at every step: their float32 copy and its pointer keys are
    made at the first step alone, and neither is kept after."""
    model = pointer.to(torch.bfloat16)
    made = {"copies": 0, "keys": 0}
    keys = PointerT5._source_keys

    def counted_keys(self, encoded):
        made["keys"] += not (self._keys is not None and self._keys[0] is encoded)
        return keys(self, encoded)

    monkeypatch.setattr(PointerT5, "_source_keys", counted_keys)
    copies = torch.Tensor.float
    monkeypatch.setattr(
        torch.Tensor,
        "float",
        lambda t: (
            made.__setitem__("copies", made["copies"] + (t.dim() == 3 and t.size(1) == 9))
            or copies(t)
        ),
    )
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(**inputs, num_beams=2, max_new_tokens=8, min_new_tokens=8)
    assert out.shape[1] == 9 and made == {"copies": 1, "keys": 1}
    assert model._keys is None and model._floats is None
    # Outside generation nothing is kept: each call copies its own outputs.
    model(**batch)
    model(**batch)
    assert made["copies"] == 3 and model._floats is None


def test_a_source_with_nothing_to_copy_only_generates(pointer, batch):
    batch["input_ids"][1] = torch.tensor([2, 1, 0, 0, 0, 0, 0, 0, 0])  # control code, </s>
    batch["attention_mask"] = (batch["input_ids"] != 0).long()
    probs = pointer(**batch).logits.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))


def test_checkpoint_round_trip(tmp_path, pointer, batch):
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "tokenizer.json").write_text("{}", encoding="utf-8")
    with torch.no_grad():
        pointer.copy_gate.bias.fill_(0.5)
    write_model(pointer, tmp_path / "checkpoint", tokenizer_dir, {"preset": "tiny"})
    loaded = load_checkpoint(tmp_path / "checkpoint").model
    assert isinstance(loaded, PointerT5) and loaded.config.copy_excluded_ids == SPECIAL
    torch.testing.assert_close(loaded(**batch).logits, pointer(**batch).logits, rtol=0, atol=0)


def _copy_task(g: torch.Generator) -> dict[str, torch.Tensor]:
    """Sources of 12 random tokens; the target is their first four."""
    source = torch.randint(3, VOCAB, (16, 12), generator=g)
    input_ids = torch.cat([source, torch.ones(16, 1, dtype=torch.long)], 1)
    labels = torch.cat([source[:, :4], torch.ones(16, 1, dtype=torch.long)], 1)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


@pytest.mark.slow
def test_it_learns_to_copy_where_a_plain_model_cannot_yet():
    losses = {}
    for copy in (False, True):
        torch.manual_seed(0)
        model = build_model("tiny", VOCAB, 0, 1, 0, copy_excluded_ids=SPECIAL if copy else None)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(150):
            loss = model(**_copy_task(g)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            losses[copy] = model.eval()(**_copy_task(torch.Generator().manual_seed(99))).loss
    # Uniform over the vocabulary is ln 297 = 5.7; over the 12 source tokens, ln 12 = 2.5.
    assert losses[True] < 2.0 < 4.0 < losses[False], losses


@pytest.fixture(scope="module")
def copy_run(tiny_model, small_corpus, tmp_path_factory):
    """The tiny model fine-tuned for 2 steps with `copy: true` (`codemt train --init`)."""
    from codemt.cli import main

    root = tmp_path_factory.mktemp("copy_run")
    config = root / "config.yaml"
    config.write_text("train:\n  copy: true\n  max_steps: 2\n", encoding="utf-8")
    tokenizer = tiny_model.parent / "tokenizer"
    args = ["train", "--preset", "tiny", "--data", str(small_corpus), "--out", str(root / "run")]
    args += ["--stage", "multimode", "--init", str(tiny_model), "--tokenizer", str(tokenizer)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--config", str(config), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def test_training_with_copy_makes_a_model_that_translates_on_torch_only(
    copy_run, small_corpus, tmp_path
):
    from codemt.backends import BackendUnavailable
    from codemt.export import export_ctranslate2
    from codemt.translate import Translator

    checkpoint = load_checkpoint(copy_run)
    assert isinstance(checkpoint.model, PointerT5) and checkpoint.meta["settings"]["copy"]
    translator = Translator.load(copy_run, device="cpu")  # auto: no export, so torch
    assert translator.backend.name == ("torch-bf16" if cpu_has_bf16() else "torch")
    method = "def add(a, b):\n    return a + b\n"
    assert isinstance(translator.translate(method, "docstring"), str)
    with pytest.raises(ValueError, match="copy mechanism"):
        export_ctranslate2(copy_run, tmp_path / "export")
    with pytest.raises(BackendUnavailable):
        Translator.load(copy_run, backend="ctranslate2")


def test_copy_must_match_the_checkpoint_it_continues(copy_run, tiny_model, tmp_path):
    from codemt.training.config import TrainSettings
    from codemt.training.loop import train
    from tests.training.test_loop import SyntheticData

    tokenizer = tiny_model.parent / "tokenizer"
    data = SyntheticData(n_batches=2)

    def settings(copy):
        return TrainSettings(preset="tiny", max_steps=3, warmup_steps=1, copy=copy)

    with pytest.raises(ValueError, match="has a copy mechanism: set copy: true .* to fine-tune it"):
        train(data, settings(False), tmp_path / "a", tokenizer, init=copy_run, progress=False)
    with pytest.raises(ValueError, match="has a copy mechanism: set copy: true .* to resume it"):
        train(data, settings(False), copy_run, tokenizer, resume=True, progress=False)
    with pytest.raises(ValueError, match="without a copy mechanism: resume it without"):
        train(data, settings(True), tiny_model, tokenizer, resume=True, progress=False)
