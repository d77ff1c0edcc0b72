"""The default-model recipe end to end at a tiny scale: mine, tokenize, train, evaluate, export."""

import dataclasses
import importlib.util
import json
import shutil

import pytest
import torch

from codemt.cli.recipe import parse_budget
from codemt.data import BatchSettings
from codemt.examples import ExampleSettings
from codemt.model import cpu_has_bf16
from codemt.recipe.corpus import check_no_leak, copy_for_training
from codemt.recipe.recipes import RECIPES, Recipe
from codemt.recipe.run import run_recipe
from codemt.training.config import TrainSettings
from tests.conftest import MODULES, STDLIB

TINY = Recipe(
    vocab_size=1000,
    pretrain_tokens=3000,
    # name_words and copy as both recipes have them, and the GPU recipe's schedule, decaying
    # to 0 at the token target: trained, resumed, exported and evaluated end to end.
    examples=ExampleSettings(max_source_tokens=64, max_target_tokens=32, name_words=True),
    batching=BatchSettings(max_tokens=1024),
    train=TrainSettings(
        preset="tiny",
        max_tokens=3000,
        warmup_steps=2,
        schedule="linear",
        save_every=2,
        eval_every=0,
        log_every=1,
        copy=True,
    ),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_recipe_runs_whole_then_resumes_to_the_same_model(tmp_path):
    sources = tuple(str(STDLIB / m) for m in MODULES)
    stopped = run_recipe(
        tmp_path / "run", recipe=TINY, sources=sources, budget=30, eval_limit=8, progress=False
    )
    # 30 s of budget leaves less than a minute for training: it stops, resumably.
    assert stopped["status"] == "stopped" and stopped["stage"] == "pretrain"
    manifest = json.loads((tmp_path / "run" / "corpus" / "manifest.json").read_text())
    assert manifest["settings"]["split_ratios"] == [0.9, 0.05, 0.05]  # the recipe's split

    done = run_recipe(tmp_path / "run", recipe=TINY, sources=sources, eval_limit=8, progress=False)
    model = tmp_path / "run" / "model"
    assert done["status"] == "done" and done["model"] == str(model)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "words.txt", "codemt.json",
                 "corpus_manifest.json", "train_log.csv", "evaluation.json", "README.md"):  # fmt: skip
        assert (model / name).is_file(), name
    card = (model / "README.md").read_text()
    assert "| docstring |" in card and "baseline: name_words" in card and "tokens in" in card
    evaluation = json.loads((model / "evaluation.json").read_text())
    assert (
        "docstring" in evaluation["modes"] and "name_words" in evaluation["baselines"]["docstring"]
    )
    # What ships is what was measured: a model with a copy mechanism has no CTranslate2 form.
    assert evaluation["model"] == str(model) and evaluation["backend"] == "torch"
    assert "on its weights with PyTorch" in card and not (model / "ctranslate2").exists()

    from codemt.pointer import PointerT5
    from codemt.translate import Translator

    translator = Translator.load(model, backend="torch")
    assert isinstance(translator.model, PointerT5)
    assert next(translator.model.parameters()).dtype == torch.float32  # stored in float16
    assert Translator.load(model).backend.name == ("torch-bf16" if cpu_has_bf16() else "torch")
    assert translator.examples.name_words  # sources are built as the model was trained
    assert isinstance(translator.translate("def add(a, b):\n    return a + b\n", "docstring"), str)

    again = run_recipe(tmp_path / "run", recipe=TINY, sources=sources, eval_limit=8, progress=False)
    assert again["status"] == "done"


def test_a_recipe_without_pretraining_or_copy_trains_from_scratch_and_ships_fast(
    tmp_path, monkeypatch
):
    import codemt.recipe.ship

    # As a model too large for float16 in git: its weights ship in 8 bits.
    monkeypatch.setattr(codemt.recipe.ship, "FLOAT16_SHIPPED_BYTES", 0)
    sources = tuple(str(STDLIB / m) for m in MODULES[:2])
    recipe = dataclasses.replace(
        TINY, pretrain_tokens=0, train=dataclasses.replace(TINY.train, copy=False)
    )
    done = run_recipe(
        tmp_path / "run", recipe=recipe, sources=sources, eval_limit=2, progress=False
    )
    assert done["status"] == "done"
    assert not (tmp_path / "run" / "pretrain").exists()
    model = tmp_path / "run" / "model"
    meta = json.loads((model / "codemt.json").read_text())
    assert meta["stage"] == "multimode" and meta["init"] is None
    assert (model / "weights.int8.safetensors").is_file() and not (
        model / "model.safetensors"
    ).exists()
    assert "stored in 8 bits" in (model / "README.md").read_text()
    # A plain model ships its int8 CTranslate2 form too, and is evaluated on it.
    fast = importlib.util.find_spec("ctranslate2") is not None
    evaluation = json.loads((model / "evaluation.json").read_text())
    assert evaluation["model"] == str(model / "ctranslate2" if fast else model)
    assert evaluation["backend"] == ("ctranslate2" if fast else "torch")
    card = (model / "README.md").read_text()
    assert ("on its int8 CTranslate2 export" if fast else "on its weights with PyTorch") in card
    if fast:
        from codemt.translate import Translator

        assert Translator.load(model).backend.name == "ctranslate2"


def test_a_run_folder_is_continued_only_with_its_own_recipe(tmp_path):
    sources = ("/nonexistent",)
    other = dataclasses.replace(TINY, vocab_size=1200)
    with pytest.raises(ValueError, match="no batches"):  # nothing mined, but recorded
        run_recipe(tmp_path, recipe=TINY, sources=sources, progress=False)
    assert json.loads((tmp_path / "recipe.json").read_text())["vocab_size"] == 1000
    with pytest.raises(ValueError, match="another recipe .*vocab_size"):
        run_recipe(tmp_path, recipe=other, sources=sources, progress=False)
    with pytest.raises(ValueError, match="max_tokens"):
        dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, max_tokens=0))
    with pytest.raises(ValueError, match="add up to 1"):
        bad_split = dataclasses.replace(TINY, split=(0.9, 0.1, 0.1))
        run_recipe(tmp_path / "bad", recipe=bad_split, sources=sources, progress=False)
    assert not (tmp_path / "bad" / "recipe.json").exists()


def test_a_prepared_run_folder_holds_corpus_and_tokenizer_and_its_preset(tmp_path):
    sources = tuple(str(STDLIB / m) for m in MODULES[:2])
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        run_recipe(tmp_path, recipe=TINY, sources=sources, preset="huge", progress=False)
    prepared = run_recipe(
        tmp_path, recipe=TINY, sources=sources, preset="small", prepare_only=True, progress=False
    )
    assert prepared["status"] == "prepared"
    assert (tmp_path / "corpus" / "manifest.json").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert not (tmp_path / "pretrain").exists() and not (tmp_path / "multimode").exists()
    assert json.loads((tmp_path / "recipe.json").read_text())["preset"] == "small"
    # Training it is the same command without prepare_only, and the same preset.
    with pytest.raises(ValueError, match="another recipe .*preset"):
        run_recipe(tmp_path, recipe=TINY, sources=sources, progress=False)


def test_dropout_is_part_of_the_recipe(tmp_path):
    sources = tuple(str(STDLIB / m) for m in MODULES[:2])
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        run_recipe(tmp_path, recipe=TINY, sources=sources, dropout=1.0, progress=False)
    run_recipe(
        tmp_path, recipe=TINY, sources=sources, dropout=0.1, prepare_only=True, progress=False
    )
    assert json.loads((tmp_path / "recipe.json").read_text())["train"]["dropout"] == 0.1
    # Resuming without it (or with another rate) is another recipe.
    with pytest.raises(ValueError, match="another recipe .*train"):
        run_recipe(tmp_path, recipe=TINY, sources=sources, prepare_only=True, progress=False)
    again = run_recipe(
        tmp_path, recipe=TINY, sources=sources, dropout=0.1, prepare_only=True, progress=False
    )
    assert again["status"] == "prepared"
    # --dropout 0 is the recipe itself, not another one.
    same = run_recipe(
        tmp_path / "zero",
        recipe=TINY,
        sources=sources,
        dropout=0.0,
        prepare_only=True,
        progress=False,
    )
    assert same["status"] == "prepared"
    assert "dropout" not in json.loads((tmp_path / "zero" / "recipe.json").read_text())["train"]


@pytest.mark.slow
def test_the_copy_of_a_prepared_run_trains_elsewhere(tmp_path):
    import pyarrow.parquet as pq

    sources = tuple(str(STDLIB / m) for m in MODULES)  # enough projects for a test split
    # Half the undocumented methods take part: the copy leaves the others out.
    recipe = dataclasses.replace(
        TINY, pretrain_tokens=0, examples=dataclasses.replace(TINY.examples, undocumented_kept=0.5)
    )
    run_recipe(tmp_path / "here", recipe=recipe, sources=sources, prepare_only=True, progress=False)
    size = copy_for_training(tmp_path / "here", tmp_path / "there")
    assert size == sum(f.stat().st_size for f in (tmp_path / "there").rglob("*") if f.is_file())
    assert not (tmp_path / "there" / "cache").exists()
    shards = tmp_path / "there" / "corpus" / "shards"
    assert not list(shards.glob("test-*"))  # evaluated here, not there
    train_shard = next(shards.glob("train-*.parquet"))
    table = pq.read_table(train_shard)
    assert "name" not in table.schema.names  # only what training reads
    # The context features that the recipe's examples leave out are left empty.
    assert not any(table.column("imports").to_pylist())
    whole_shards = tmp_path / "here" / "corpus" / "shards"
    whole = pq.read_table(whole_shards / train_shard.name)
    assert any(whole.column("imports").to_pylist())
    documented = sum(whole.column("docstring_task").to_pylist())
    assert documented == sum(table.column("docstring_task").to_pylist())
    undocumented = (len(whole) - documented, len(table) - documented)
    assert 0.3 * undocumented[0] < undocumented[1] < 0.7 * undocumented[0]
    valid = next(shards.glob("valid-*.parquet"))  # validation keeps every method
    assert len(pq.read_table(valid)) == len(pq.read_table(whole_shards / valid.name))
    with pytest.raises(ValueError, match="not an empty folder"):
        copy_for_training(tmp_path / "here", tmp_path / "there")
    for stage in ("multimode", "pretrain"):  # span masking's draws are the same there too
        here, there = (_examples(tmp_path / run, recipe, stage) for run in ("here", "there"))
        assert here == there, stage
    # The copy trains the recipe there, nothing mined (no sources); the model comes back here
    # to be exported and evaluated.
    trained = run_recipe(
        tmp_path / "there", recipe=recipe, sources=(), train_only=True, progress=False
    )
    assert trained["status"] == "trained" and not (tmp_path / "there" / "model").exists()
    shutil.copytree(tmp_path / "there" / "multimode", tmp_path / "here" / "multimode")
    done = run_recipe(
        tmp_path / "here", recipe=recipe, sources=sources, finish=True, eval_limit=2, progress=False
    )
    assert done["status"] == "done"
    assert (
        "docstring"
        in json.loads((tmp_path / "here" / "model" / "evaluation.json").read_text())["modes"]
    )
    with pytest.raises(ValueError, match="choose one"):
        run_recipe(tmp_path / "here", recipe=recipe, finish=True, train_only=True)


def _examples(run, recipe, stage: str = "multimode") -> list:
    """Every training example of a stage's epoch 0 in a prepared run folder, as the recipe
    makes them."""
    from tokenizers import Tokenizer

    from codemt.corpus import Corpus
    from codemt.data import ExampleData
    from codemt.examples import Vocabulary
    from codemt.token_cache import TokenCache

    tokenizer = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    cache = TokenCache.build(
        Corpus.open(run / "corpus"), "train", tokenizer, run / "tokens", workers=1
    )
    data = ExampleData(
        cache,
        Vocabulary.from_tokenizer(tokenizer),
        stage,
        recipe.examples,
        recipe.batching,
    )
    plan = data.plan(0)
    return [
        data.build(plan.example(i), 0)
        for batch in range(plan.num_batches)
        for i in plan.batch(batch).tolist()
    ]


@pytest.mark.parametrize("native", [True, False])
def test_the_cpu_recipe_trains_in_bf16_only_where_the_cpu_has_it(
    tmp_path, monkeypatch, capsys, native
):
    import codemt.training.loop

    monkeypatch.setattr(codemt.training.loop, "cpu_has_bf16", lambda: native)
    sources = tuple(str(STDLIB / m) for m in MODULES[:2])
    recipe = dataclasses.replace(
        TINY, pretrain_tokens=0, train=dataclasses.replace(TINY.train, mixed_precision="bf16")
    )
    done = run_recipe(
        tmp_path, recipe=recipe, hardware="cpu", sources=sources, eval_limit=2, progress=False
    )
    assert done["status"] == "done"
    meta = json.loads((tmp_path / "model" / "codemt.json").read_text())
    assert meta["settings"]["mixed_precision"] == ("bf16" if native else "no")
    assert ("no bfloat16 instructions" in capsys.readouterr().err) is not native
    # What the run folder records is the recipe itself, whatever this CPU trained it in.
    assert json.loads((tmp_path / "recipe.json").read_text())["train"]["mixed_precision"] == "bf16"


def test_the_prepare_command_refuses_a_used_copy_folder_before_mining(
    tmp_path, monkeypatch, capsys
):
    import codemt.cli.recipe
    from codemt.cli import main

    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "something").write_text("")
    mined = []
    monkeypatch.setattr(codemt.cli.recipe, "run_recipe", lambda *a, **k: mined.append(1))
    command = ["recipe", "default", "--out", str(tmp_path / "run"), "--prepare"]
    assert main([*command, str(tmp_path / "copy")]) == 2
    assert "not an empty folder" in capsys.readouterr().err and not mined

    called = {}

    def prepared(*args, **kwargs):
        called.update(kwargs)
        return {"status": "prepared", "hardware": "gpu"}

    monkeypatch.setattr(codemt.cli.recipe, "run_recipe", prepared)
    assert main([*command, "--preset", "base"]) == 0
    assert "codemt recipe default --hardware gpu --preset base --out" in capsys.readouterr().out
    assert main([*command, "--preset", "base", "--dropout", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "codemt recipe default --hardware gpu --preset base --dropout 0.1 --out" in printed
    assert called["dropout"] == 0.1 and called["preset"] == "base"


@pytest.mark.slow
def test_finish_exports_and_evaluates_what_is_trained_so_far(tmp_path):
    sources = tuple(str(STDLIB / m) for m in MODULES)
    # A target far away, and training that stops after 2 steps: the run is unfinished.
    recipe = dataclasses.replace(
        TINY,
        pretrain_tokens=0,
        train=dataclasses.replace(TINY.train, max_tokens=10**9, max_steps=2),
    )
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        run_recipe(run, recipe=recipe, sources=sources, finish=True, progress=False)
    stopped = run_recipe(run, recipe=recipe, sources=sources, progress=False)
    assert stopped["status"] == "stopped" and not (run / "model").exists()

    done = run_recipe(
        run, recipe=recipe, sources=sources, finish=True, eval_limit=2, progress=False
    )
    assert done["status"] == "done"
    assert (run / "eval" / "checkpoint.txt").read_text().strip() == "multimode/step-000002"
    assert json.loads((run / "model" / "codemt.json").read_text())["progress"]["step"] == 2
    assert "docstring" in json.loads((run / "model" / "evaluation.json").read_text())["modes"]
    # The same checkpoint again: its evaluation is reused, not measured twice.
    stamp = (run / "eval" / "metrics.json").stat().st_mtime_ns
    run_recipe(run, recipe=recipe, sources=sources, finish=True, eval_limit=2, progress=False)
    assert (run / "eval" / "metrics.json").stat().st_mtime_ns == stamp


def test_benchmark_projects_in_the_corpus_are_refused(small_corpus, tmp_path, capsys):
    benchmark = tmp_path / "bench.jsonl"
    benchmark.write_text(
        json.dumps({"repo": "someone/json"}) + "\n" + json.dumps({"repo": "x/other"}) + "\n"
    )
    from codemt.corpus import iter_batches

    repos = {
        r
        for b in iter_batches(small_corpus, columns=["repo"])
        for r in b.column("repo").to_pylist()
    }
    assert "json" in {r.rsplit("/", 1)[-1] for r in repos}
    with pytest.raises(ValueError, match="json"):
        check_no_leak(small_corpus, benchmark)
    benchmark.write_text(json.dumps({"repo": "openai/baselines"}) + "\n")
    check_no_leak(small_corpus, benchmark)
    # That corpus was mined without keeping the file's methods out: a warning says so.
    assert "mined without excluding the methods of" in capsys.readouterr().err


def test_the_recipe_mines_out_the_benchmark_s_methods(tmp_path, capsys):
    benchmark = tmp_path / "bench.jsonl"
    code = "def clamp(value, low, high):\n    return max(low, min(value, high))"
    benchmark.write_text(json.dumps({"repo": "x/other", "path": "m.py", "code": code}) + "\n")
    sources = tuple(str(STDLIB / m) for m in MODULES[:2])
    run_recipe(
        tmp_path / "run",
        recipe=TINY,
        sources=sources,
        benchmark=benchmark,
        prepare_only=True,
        progress=False,
    )
    manifest = json.loads((tmp_path / "run" / "corpus" / "manifest.json").read_text())
    assert [e["source"] for e in manifest["settings"]["exclude"]] == [str(benchmark)]
    assert "mined without excluding" not in capsys.readouterr().err


@pytest.mark.parametrize("hardware", sorted(RECIPES))
def test_each_recipe_makes_valid_training_settings(hardware):
    recipe = RECIPES[hardware]
    multimode = recipe.stage_settings("multimode")
    assert multimode.max_tokens == recipe.multimode_tokens and multimode.preset == recipe.preset
    if recipe.pretrain_tokens:
        assert recipe.stage_settings("pretrain").select_on is None


def test_pre_training_takes_the_recipe_settings_up_to_its_own_target():
    pretrain = TINY.stage_settings("pretrain")
    assert pretrain.max_tokens == TINY.pretrain_tokens and pretrain.copy == TINY.train.copy
    assert TINY.with_preset("small").stage_settings("multimode").preset == "small"


def test_budget_parsing():
    assert parse_budget("150m") == 9000 and parse_budget("2h") == 7200 and parse_budget("90") == 90


def test_the_card_learning_curve_has_a_row_per_validation(tmp_path):
    from codemt.recipe.ship import _learning_curve

    log = tmp_path / "train_log.csv"
    log.write_text(
        "step,epoch,tokens,loss,lr,grad_norm,valid_loss,task_loss,tokens_per_s,elapsed_s\n"
        "50,0,100000,5.5,0.01,1.0,,,2000.0,60.0\n"
        "100,0,200000,4.5,0.01,1.0,4.75,5.5,2000.0,120.0\n"
        "150,1,300000,4.0,0.01,1.0,4.25,,2000.0,180.0\n"
        "175,1,350000,,,,4.125,5.25,,210.0\n"
    )
    rows = _learning_curve(log)
    assert "| 100 | 200,000 | 2.0 | 4.500 | 4.750 | 5.500 |" in rows
    assert "| 150 | 300,000 | 3.0 | 4.000 | 4.250 |  |" in rows  # a run without selection
    assert "| 175 | 350,000 | 3.5 |  | 4.125 | 5.250 |" in rows  # validated at a step not logged
    assert not any(r.startswith("| 50 |") for r in rows)
    assert _learning_curve(tmp_path / "missing.csv") == []


def test_the_corpus_extra_packages_not_installed_are_named(monkeypatch):
    from importlib import metadata

    from codemt.recipe import corpus as recipe

    requires = [
        "numpy>=1.24",
        'torch<3,>=2.2; extra == "train"',
        'pytest>=7; extra == "corpus"',  # installed here
        'pytest>=999; extra == "corpus"',  # installed, too old
        'no-such-package-xyz>=1; extra == "corpus"',
        'another-missing ; python_version >= "3.10" and extra == "corpus"',
        'not-on-this-python ; python_version < "3.0" and extra == "corpus"',
    ]
    monkeypatch.setattr(metadata, "requires", lambda name: requires)
    missing = recipe.missing_corpus_packages()
    assert missing[1:] == ["no-such-package-xyz", "another-missing"]
    assert missing[0].startswith("pytest ") and "(wants >=999)" in missing[0]

    # Metadata of an installation older than the extra: say so rather than nothing.
    monkeypatch.setattr(metadata, "requires", lambda name: requires[:2])
    assert "reinstall" in recipe.missing_corpus_packages()[0]

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert recipe.missing_corpus_packages() == []


@pytest.mark.parametrize("recipe", [*RECIPES.values(), TINY], ids=[*RECIPES, "tiny"])
def test_a_recorded_recipe_reads_back_as_itself(recipe):
    assert Recipe.from_record(recipe.record()) == recipe


def test_a_run_folder_recorded_by_an_earlier_version_continues(tmp_path):
    from codemt.recipe.run import _check_same_recipe

    earlier = {  # `recipe.json` as the untyped recipes wrote it: every value given, as given
        "hardware": "cpu",
        "preset": "tiny",
        "vocab_size": 1000,
        "pretrain_tokens": 3000,
        "multimode_tokens": 3000,
        "examples": {"max_source_tokens": 64, "max_target_tokens": 32, "name_words": True},
        "batching": {"max_tokens": 1024},
        "train": {
            "warmup_steps": 2,
            "schedule": "linear",
            "save_every": 2,
            "eval_every": 0,
            "log_every": 1,
            "copy": True,
        },
        "split": [0.9, 0.05, 0.05],
    }
    (tmp_path / "recipe.json").write_text(json.dumps(earlier))
    _check_same_recipe(tmp_path, "cpu", TINY)  # the same recipe
    other = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, dropout=0.1))
    with pytest.raises(ValueError, match="another recipe .*train"):
        _check_same_recipe(tmp_path, "cpu", other)
    with pytest.raises(ValueError, match="another recipe .*hardware"):
        _check_same_recipe(tmp_path, "gpu", TINY)
