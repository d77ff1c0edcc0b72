"""Token cache and token-budget batches: cached once, invalidated on change, deterministic, tight."""

import json

import numpy as np
import pytest
import torch

from codemt.corpus import Corpus
from codemt.data import BatchSettings, EpochPlan, ExampleData, Planned
from codemt.examples import ExampleSettings, Mode, Vocabulary
from codemt.token_cache import TokenCache


@pytest.fixture(scope="module")
def cache(small_corpus, small_tokenizer, tmp_path_factory):
    return TokenCache.build(
        Corpus.open(small_corpus), "train", small_tokenizer, tmp_path_factory.mktemp("cache")
    )


def test_cache_holds_every_method_and_decodes_back(cache, small_tokenizer, small_corpus):
    from codemt.corpus import iter_records

    records = list(iter_records(small_corpus, "train"))
    assert len(cache) == len(records) > 50
    for index in (0, len(records) // 2, len(records) - 1):
        assert small_tokenizer.decode(cache.ids(index, "body").tolist()) == records[index]["body"]
        assert (
            small_tokenizer.decode(cache.ids(index, "signature").tolist())
            == records[index]["signature"]
        )


def test_cache_is_reused_and_invalidated(small_corpus, small_tokenizer, tmp_path):
    from codemt.tokenizer import TokenizerSettings, corpus_texts, train_tokenizer

    first = TokenCache.build(Corpus.open(small_corpus), "train", small_tokenizer, tmp_path)
    stamp = (first.folder / "tokens.int32").stat().st_mtime_ns
    again = TokenCache.build(Corpus.open(small_corpus), "train", small_tokenizer, tmp_path)
    assert (
        again.folder == first.folder and (again.folder / "tokens.int32").stat().st_mtime_ns == stamp
    )

    other = train_tokenizer(corpus_texts(small_corpus), TokenizerSettings(vocab_size=900))
    assert (
        TokenCache.build(Corpus.open(small_corpus), "train", other, tmp_path).folder != first.folder
    )

    manifest = json.loads((small_corpus / "manifest.json").read_text())
    try:
        (small_corpus / "manifest.json").write_text(json.dumps({**manifest, "created": "later"}))
        assert (
            TokenCache.build(Corpus.open(small_corpus), "train", small_tokenizer, tmp_path).folder
            != first.folder
        )
    finally:
        (small_corpus / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("limit", [None, 300])
def test_worker_processes_build_the_same_cache(
    cache, small_corpus, small_tokenizer, tmp_path, limit
):
    serial = TokenCache.build(
        Corpus.open(small_corpus),
        "train",
        small_tokenizer,
        tmp_path / "one",
        limit=limit,
        workers=1,
    )
    parallel = TokenCache.build(
        Corpus.open(small_corpus), "train", small_tokenizer, tmp_path / "two", limit=limit, batch_size=64,
        workers=2,
    )  # fmt: skip
    assert parallel.folder.name == serial.folder.name and len(parallel) == (limit or len(cache))
    for name in ("tokens.int32", "offsets.npy", "style.npy", "docstring_task.npy", "key.npy"):
        assert (parallel.folder / name).read_bytes() == (serial.folder / name).read_bytes(), name
    assert not small_tokenizer.encode_special_tokens  # the caller's tokenizer as it was


def test_runs_that_build_the_same_cache_at_once_both_get_it(
    small_corpus, small_tokenizer, tmp_path
):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    cache = TokenCache.build(
        Corpus.open(small_corpus), "train", small_tokenizer, tmp_path / "alone"
    )
    tmp_path /= "together"
    tmp_path.mkdir()
    # What a killed run left: the folder of a process that is gone.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    abandoned = tmp_path / f"{cache.folder.name}.tmp-{gone}-x"
    abandoned.mkdir()
    with ThreadPoolExecutor(2) as pool:
        built = list(
            pool.map(
                lambda _: TokenCache.build(
                    Corpus.open(small_corpus),
                    "train",
                    small_tokenizer,
                    tmp_path,
                    batch_size=16,
                    workers=1,
                ),
                range(2),
            )
        )
    assert built[0].folder == built[1].folder == tmp_path / cache.folder.name
    assert (built[0].folder / "tokens.int32").read_bytes() == (
        cache.folder / "tokens.int32"
    ).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [cache.folder.name]  # nothing left over


def test_special_tokens_in_feature_text_stay_literal(small_tokenizer, tmp_path):
    from codemt.corpus import SCHEMA, write_table
    from codemt.tokenizer import TARGET_TOKENS, special_token_id

    record = {name: None for name in SCHEMA.names} | {
        "repo": "r", "path": "p.py", "name": "f", "lineno": 1, "signature": "def f():",
        "docstring": "Explain the <to_body> code.", "body": "    return '<signature>'",
        "docstring_style": "summary", "docstring_task": True, "split": "train",
    }  # fmt: skip
    write_table([record], tmp_path / "corpus" / "shards" / "train-00000.parquet")
    (tmp_path / "corpus" / "manifest.json").write_text("{}")
    cache = TokenCache.build(
        Corpus.open(tmp_path / "corpus"), "train", small_tokenizer, tmp_path / "cache"
    )
    specials = {
        special_token_id(small_tokenizer, t) for t in (TARGET_TOKENS["body"], "<signature>")
    }
    assert not specials & set(cache.tokens.tolist())
    assert (
        small_tokenizer.decode(cache.ids(0, "docstring").tolist()) == "Explain the <to_body> code."
    )
    assert not small_tokenizer.encode_special_tokens  # the tokenizer is left as it was


def data(cache, tokenizer, stage, examples=None, **batching):
    return ExampleData(
        cache,
        Vocabulary.from_tokenizer(tokenizer),
        stage,
        examples or ExampleSettings(),
        BatchSettings(**batching),
    )


@pytest.mark.parametrize("stage", ["pretrain", "multimode"])
def test_batches_are_deterministic_within_budget_and_shard_across_ranks(
    cache, small_tokenizer, stage
):
    one = data(cache, small_tokenizer, stage, max_tokens=2048, seed=3)
    two = data(cache, small_tokenizer, stage, max_tokens=2048, seed=3)
    first = list(one.batches(0))
    assert all(
        torch.equal(a["input_ids"], b["input_ids"])
        for a, b in zip(first, two.batches(0), strict=True)
    )
    assert not all(
        a["input_ids"].shape == b["input_ids"].shape
        for a, b in zip(first, one.batches(1), strict=False)
    ), "a new epoch draws new examples and batches"
    # The epoch's tokens, which a schedule's end is reckoned from: exact when every batch is
    # built to count them, close when a sample is.
    real = sum(int(b["attention_mask"].sum() + (b["labels"] != -100).sum()) for b in first)
    assert one.tokens(0, sample=len(first)) == real
    assert one.tokens(0, sample=5) == pytest.approx(real, rel=0.01)
    for batch in first:
        rows, source_len = batch["input_ids"].shape
        assert rows == 1 or rows * (source_len + batch["labels"].shape[1]) <= 2048
        assert (batch["attention_mask"].sum(1) > 0).all()
        assert ((batch["labels"] == -100) | (batch["labels"] >= 0)).all()

    plan = one.plan(0)
    batches = [set(plan.batch(j).tolist()) for j in range(plan.num_batches)]
    rank0 = batches[0::2][: one.num_batches(0, rank=0, world_size=2)]
    rank1 = batches[1::2][: one.num_batches(0, rank=1, world_size=2)]
    assert len(rank0) == len(rank1) == len(batches) // 2
    shapes0 = [b["input_ids"].shape[0] for b in one.batches(0, rank=0, world_size=2)]
    assert shapes0 == [len(b) for b in rank0]
    assert not set().union(*rank0) & set().union(*rank1)


def test_resuming_mid_epoch_skips_to_the_same_batch(cache, small_tokenizer):
    examples = data(cache, small_tokenizer, "multimode", max_tokens=2048)
    whole = list(examples.batches(0))
    resumed = list(examples.batches(0, start=3))
    assert len(resumed) == len(whole) - 3
    assert all(
        torch.equal(a["labels"], b["labels"]) for a, b in zip(whole[3:], resumed, strict=True)
    )


def test_multimode_examples_start_with_their_control_code(cache, small_tokenizer):
    examples = data(cache, small_tokenizer, "multimode", max_tokens=4096)
    vocab = examples.vocab
    planned = list(examples.plan(0).examples())
    for item in planned[:200]:
        source, target = examples.build(item, 0)
        assert source[0] == vocab.targets[item.mode.target]
        assert len(source) <= item.source_len and len(target) <= item.target_len
        assert target[-1] == vocab.eos and source[-1] == vocab.eos


def test_name_words_are_planned_and_built_after_source_signatures(cache, small_tokenizer):
    settings = ExampleSettings(name_words=True)
    examples = data(cache, small_tokenizer, "multimode", settings, max_tokens=4096)
    planned = list(examples.plan(0).examples())
    with_signature = [p for p in planned if "signature" in p.mode.sources][:100]
    assert with_signature
    for item in with_signature:
        source, _ = examples.build(item, 0)
        # Planned lengths are what batching sorts and packs by: exact unless a cut at a
        # line break shortened the source.
        assert len(source) <= item.source_len
        if item.source_len < settings.max_source_tokens:
            assert len(source) == item.source_len
        names = small_tokenizer.decode(cache.ids(item.method, "names").tolist())
        assert names.startswith("\n# ") and names in small_tokenizer.decode(source)


def test_undocumented_share_thins_only_methods_without_a_task_docstring(cache, small_tokenizer):
    vocab = Vocabulary.from_tokenizer(small_tokenizer)

    def planned(share: float, epoch: int = 0) -> list[Planned]:
        settings = ExampleSettings(undocumented_share=share)
        data = ExampleData(cache, vocab, "multimode", settings, BatchSettings())
        return list(data.plan(epoch).examples())

    documented = {i for i in range(len(cache)) if cache.docstring_task[i]}
    everything, thinned = planned(1.0), planned(0.3)
    assert documented and len(everything) > len(documented)
    assert documented <= {p.method for p in thinned}  # every documented method stays
    undocumented = [p.method for p in thinned if p.method not in documented]
    expected = 0.3 * (len(everything) - len(documented))
    assert abs(len(undocumented) - expected) < 0.25 * expected + 5
    # A fresh draw each epoch, and none at all with a share of 0.
    assert undocumented != [p.method for p in planned(0.3, 1) if p.method not in documented]
    assert {p.method for p in planned(0.0)} == documented
    with pytest.raises(ValueError, match="undocumented_share"):
        ExampleSettings(undocumented_share=1.5)


def test_undocumented_kept_is_a_fixed_set_of_methods_without_a_task_docstring(
    cache, small_tokenizer
):
    vocab = Vocabulary.from_tokenizer(small_tokenizer)

    def methods(epoch: int = 0, **settings) -> set[int]:
        data = ExampleData(cache, vocab, "multimode", ExampleSettings(**settings), BatchSettings())
        return set(data.plan(epoch).method.tolist())

    documented = {i for i in range(len(cache)) if cache.docstring_task[i]}
    everything = methods()
    kept = methods(undocumented_kept=0.4)
    assert documented <= kept < everything
    chosen = {i for i in range(len(cache)) if cache.key[i] < 0.4}
    assert kept == everything & (documented | chosen)
    # The same methods every epoch, a share of them drawn each epoch, none outside them.
    assert methods(1, undocumented_kept=0.4) == kept
    assert methods(1, undocumented_kept=0.4, undocumented_share=0.5) < kept
    assert methods(undocumented_kept=0.0) == everything & documented
    with pytest.raises(ValueError, match="undocumented_kept"):
        ExampleSettings(undocumented_kept=-0.1)


def test_method_keys_depend_on_signature_and_body_alone():
    from codemt.token_cache import method_keys

    keys = method_keys(["def f(x):", "def f(x):", "def g(x):"], ["return x", "return x", ""])
    assert keys[0] == keys[1] != keys[2] and ((keys >= 0) & (keys < 1)).all()
    assert method_keys(["def f(x):"], ["return x"])[0] == keys[0]


def test_plan_draws_modes_as_rng_choice_does(cache, small_tokenizer):
    """The cached planner makes the same random draws, in the same order, as drawing each
    method's mode afresh with `rng.choice`: plans do not depend on what is cached."""
    from codemt.examples import TOKEN_FIELDS, available_modes, target_style
    from codemt.token_cache import STYLE_CODES

    settings = ExampleSettings(
        undocumented_share=0.5,
        mode_weights={"signature+body->docstring": 5.0, "body->signature": 0},
    )
    examples = ExampleData(
        cache, Vocabulary.from_tokenizer(small_tokenizer), "multimode", settings, BatchSettings()
    )
    for epoch in (0, 1):
        rng = np.random.default_rng([0, settings.seed, epoch, 1])
        expected = []
        for method in range(len(cache)):
            lengths = dict(zip(TOKEN_FIELDS, cache.lengths[method].tolist(), strict=True))
            documented = bool(cache.docstring_task[method])
            if not documented and rng.random() >= 0.5:
                continue
            modes = available_modes(
                {f: lengths[f] > 0 for f in ("signature", "docstring", "body")}, documented
            )
            weights = np.asarray([settings.weight(m) for m in modes])
            if not modes or weights.sum() <= 0:
                continue
            mode = modes[rng.choice(len(modes), p=weights / weights.sum())]
            style = None
            if mode.target == "docstring":
                summary = rng.random() < settings.summary_fraction
                style = target_style(STYLE_CODES[cache.style[method]], summary)
            expected.append((method, mode, style))
        planned = list(examples.plan(epoch).examples())
        assert [(p.method, p.mode, p.style) for p in planned] == expected


def test_length_bucketing_keeps_padding_under_ten_percent():
    """Planned lengths shaped like real methods (many short, a long tail), one epoch's worth."""
    rng = np.random.default_rng(0)
    n = 20000
    source = np.clip(rng.lognormal(3.5, 1.0, n).astype(int) + 4, 4, 512).astype(np.int32)
    target = np.clip(rng.lognormal(2.8, 1.1, n).astype(int) + 2, 2, 256).astype(np.int32)
    examples = ExampleData.__new__(ExampleData)
    examples.batching = BatchSettings(max_tokens=8192)
    order, bounds = examples._batch(source, target, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(n))
    plan = EpochPlan(
        np.arange(n, dtype=np.int32), np.zeros(n, np.int16), np.zeros(n, np.int8), source,
        target, np.zeros(n, bool), order, bounds, (Mode(("body",), "docstring"),),
    )  # fmt: skip
    examples._plans = {0: plan}
    real, padded = plan.batch_costs()
    assert ((padded <= 8192) | (np.diff(bounds) == 1)).all()
    assert examples.padding_waste(0) < 0.10


def reference_batches(source, target, batching, rng) -> list[list[int]]:
    """Batching as it was written over lists of examples, before plans became columns:
    the order of examples and batches a run started then resumes on."""
    planned = list(zip(source.tolist(), target.tolist(), strict=True))
    order = rng.permutation(len(planned))
    s_all, t_all = np.asarray(source, np.int64), np.asarray(target, np.int64)
    mean_cost = float((s_all + t_all).mean())
    pool = max(int(batching.pool_batches * batching.max_tokens / mean_cost), 1)
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        source_bin = np.floor(np.log(s_all[chunk]) / np.log(1.1)).astype(np.int64)
        snake = np.where(source_bin % 2 == 0, t_all[chunk], -t_all[chunk])
        chunk = chunk[np.lexsort((s_all[chunk], snake, source_bin))]
        current, longest_s, longest_t, real = [], 0, 0, 0
        for index in chunk.tolist():
            s, t = max(longest_s, planned[index][0]), max(longest_t, planned[index][1])
            padded = (len(current) + 1) * (s + t)
            new_real = real + planned[index][0] + planned[index][1]
            if current and (
                padded > batching.max_tokens or new_real < (1 - batching.max_padding) * padded
            ):
                batches.append(current)
                current, s, t, new_real = (
                    [],
                    planned[index][0],
                    planned[index][1],
                    sum(planned[index]),
                )
            current.append(index)
            longest_s, longest_t, real = s, t, new_real
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


@pytest.mark.parametrize("batching", [BatchSettings(max_tokens=512, pool_batches=3),
                                      BatchSettings(max_tokens=4096, max_padding=0.3)])  # fmt: skip
def test_batches_are_cut_and_shuffled_as_before_plans_were_columns(batching):
    rng = np.random.default_rng(5)
    source = rng.integers(3, 200, 3000).astype(np.int32)
    target = rng.integers(2, 90, 3000).astype(np.int32)
    data = ExampleData.__new__(ExampleData)
    data.batching = batching
    order, bounds = data._batch(source, target, np.random.default_rng(9))
    got = [order[bounds[j] : bounds[j + 1]].tolist() for j in range(len(bounds) - 1)]
    assert got == reference_batches(source, target, batching, np.random.default_rng(9))


@pytest.mark.parametrize(
    "settings",
    [
        ExampleSettings(),
        ExampleSettings(name_words=True, context=False, max_source_tokens=48),
        ExampleSettings(neighbors=2, neighbor_tokens=8, max_source_tokens=64, summary_fraction=0.5),
    ],
)
def test_planned_lengths_over_arrays_are_those_of_the_definitions(cache, small_tokenizer, settings):
    """Each example's planned lengths, computed for many at once, are what the one-example
    definitions (`source_budgets`, `neighbor_length`, `span_counts`) give."""
    from codemt.examples import (
        CONTEXT_FEATURES,
        TOKEN_FIELDS,
        control_ids,
        neighbor_length,
        source_budgets,
        span_counts,
        span_room,
    )

    vocab = Vocabulary.from_tokenizer(small_tokenizer)
    for stage in ("multimode", "pretrain"):
        data = ExampleData(cache, vocab, stage, settings, BatchSettings())
        plan = data.plan(0)
        assert len(plan) and plan.method.dtype == np.int32 and len(cache.lengths) == len(cache)
        for item in plan.examples():
            lengths = dict(zip(TOKEN_FIELDS, cache.lengths[item.method].tolist(), strict=True))
            context = [f for f in CONTEXT_FEATURES if lengths[f]] if settings.context else []
            if item.mode is None:
                names = [f for f in ("signature", "docstring", "body") if lengths[f]] + context
                room = span_room(settings)
                budgets = source_budgets({f: lengths[f] for f in names}, room - len(names))
                counts = span_counts(len(names) + sum(budgets.values()), settings)
                expected = tuple(int(n) for n in counts)
            else:
                if settings.names_follow_signature(item.mode):
                    lengths["signature"] += lengths["names"]
                sources = [*item.mode.sources, *context]
                fixed = len(control_ids(item.mode, item.style, vocab)) + len(sources) + 1
                budgets = source_budgets(
                    {f: lengths[f] for f in sources}, settings.max_source_tokens - fixed
                )
                source = fixed + sum(budgets.values())
                for other in data.neighbors_of(item.method, item.mode.target) * item.neighbors:
                    other_lengths = dict(
                        zip(TOKEN_FIELDS, cache.lengths[other].tolist(), strict=True)
                    )
                    source += int(neighbor_length(other_lengths, item.mode.target, settings))
                field = "summary" if item.style == "summary" else item.mode.target
                expected = (source, min(lengths[field], settings.max_target_tokens - 1) + 1)
            assert (item.source_len, item.target_len) == expected
        if settings.neighbors and stage == "multimode":
            assert plan.neighbors.any()


def test_a_plan_holds_about_twenty_bytes_an_example(cache, small_tokenizer):
    data = ExampleData(
        cache, Vocabulary.from_tokenizer(small_tokenizer), "multimode", ExampleSettings(),
        BatchSettings(),
    )  # fmt: skip
    plan = data.plan(0)
    columns = [plan.method, plan.mode, plan.style, plan.source_len, plan.target_len,
               plan.neighbors, plan.order]  # fmt: skip
    assert sum(c.nbytes for c in columns) / len(plan) <= 20


def test_a_cut_split_is_spread_over_all_of_it():
    from codemt.token_cache import spread_rows

    assert spread_rows(10, 3).tolist() == [0, 4, 9]  # first, middle and last project alike
    assert spread_rows(10, None) is None and spread_rows(5, 10) is None
    assert len(spread_rows(100_000, 2000)) == 2000
