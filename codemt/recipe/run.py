"""The recipe's steps, each resumable: mine, tokenizer, training stages, export, evaluation.

`run_recipe` is `codemt recipe default`: the same call continues a run folder where it
stopped (a budget, a kill), and refuses one started with another recipe.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from codemt.backends import select_backend
from codemt.evaluate import evaluate, load_data, parse_mode, write_results
from codemt.examples import all_modes
from codemt.mine.pipeline import mine
from codemt.mine.settings import MineSettings
from codemt.model import resolve_checkpoint
from codemt.recipe.corpus import check_no_leak, missing_corpus_packages
from codemt.recipe.recipes import RECIPES, SOURCES, Recipe, pick_hardware
from codemt.recipe.ship import attach_evaluation, export_model
from codemt.training.stages import prepare_tokenizer, train_stages
from codemt.translate import Translator


def _trained_tokens(run_dir: Path) -> int:
    """Tokens a stage's run has trained on so far (0 before its first checkpoint)."""
    try:
        checkpoint = resolve_checkpoint(run_dir, newest=True)
    except FileNotFoundError:
        return 0
    progress = json.loads((checkpoint / "state" / "progress.json").read_text(encoding="utf-8"))
    return int(progress["state"]["tokens"])


def _check_same_recipe(out: Path, hardware: str, recipe: Recipe) -> None:
    """Record the recipe of a new run in `out/recipe.json`; refuse to continue another's.

    Recipes are compared as settings, not as text: a record of an earlier version, which
    wrote other fields or other defaults, stands for the same recipe when it means it.
    """
    recorded = out / "recipe.json"
    record = {"hardware": hardware, **recipe.record()}
    if recorded.is_file():
        before = json.loads(recorded.read_text(encoding="utf-8"))
        try:
            same = before.get("hardware") == hardware and Recipe.from_record(before) == recipe
        except (KeyError, TypeError, ValueError):  # not a recipe this version can read
            same = False
        if not same:
            changed = sorted(
                k for k in record.keys() | before.keys() if before.get(k) != record.get(k)
            )
            started = "; ".join(f"{k} {json.dumps(before.get(k))}" for k in changed)
            raise ValueError(
                f"{out} was started with another recipe (it differs in {', '.join(changed)}; "
                f"it was started with {started}); continue it with the options (--hardware, "
                f"--preset, --dropout) and the codemt version that started it, or start afresh with "
                f"another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = recorded.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(recorded)


def run_recipe(
    out: Path,
    *,
    hardware: str = "auto",
    budget: float | None = None,
    benchmark: Path | None = None,
    recipe: Recipe | None = None,
    preset: str | None = None,
    dropout: float | None = None,
    prepare_only: bool = False,
    finish: bool = False,
    train_only: bool = False,
    sources: tuple[str, ...] = SOURCES,
    eval_limit: int = 500,
    progress: bool = True,
) -> dict:
    """Run (or resume) the default-model recipe in `out`; returns its status.

    Status `"done"` means the model is exported to `out/model`; `"stopped"` means the
    budget ran out and the same call will continue (`finish` exports and evaluates what is
    trained so far instead, the best checkpoint of the last stage, also one trained
    elsewhere and unpacked into its run folder); `"prepared"` (with `prepare_only`)
    means the corpus and the tokenizer are ready, so that `out` can be copied to the
    machine that trains (one without network: training needs nothing else); `"trained"`
    (with `train_only`) means training reached its target, and the export and evaluation
    are left to a `finish` where the model is brought back (a copy from `copy_for_training`
    has no test split to evaluate on). `preset` replaces the recipe's model size and
    `dropout` its dropout rate (0; both recorded with the recipe, so a resume must repeat
    them); `recipe` and `sources` replace the
    hardware's recipe and the mined sources (tests run the pipeline small this way).
    """
    from codemt.training.loop import cpu_has_bf16

    # The budget bounds the whole run, the token caches' building included.
    deadline = None if budget is None else time.monotonic() + budget
    out = Path(out)
    kind = pick_hardware(hardware)
    recipe = recipe or RECIPES[kind]
    if preset is not None:
        recipe = recipe.with_preset(preset)
    if dropout is not None:
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        recipe = replace(recipe, train=replace(recipe.train, dropout=dropout))
    corpus = out / "corpus"
    if finish and train_only:
        raise ValueError("finish exports and evaluates, train_only does neither: choose one")
    if finish and not _has_checkpoint(out / "multimode"):  # (before any mining)
        raise FileNotFoundError(
            f"{out / 'multimode'}: no checkpoint yet; train first (the same command without --finish)"
        )

    # Mining settings first: a bad split is refused before the recipe is recorded.
    # The evaluation file's methods, and their copies in other projects, are mined out.
    settings = MineSettings(
        split_ratios=tuple(recipe.split),
        progress=progress,
        cache_dir=out / "cache",
        exclude=() if benchmark is None else (str(benchmark),),
    )
    _check_same_recipe(out, kind, recipe)
    if not (corpus / "manifest.json").is_file():
        missing = missing_corpus_packages() if sources == SOURCES else []
        if missing:
            print(
                f"codemt recipe: warning: the corpus the default model is trained on needs "
                f"packages this environment lacks ({', '.join(missing)}); the corpus will be "
                f"smaller than the recipe's. Install them first with "
                f"`pip install 'codemt[corpus]'` (from a checkout: `pip install -e '.[corpus]'`).",
                file=sys.stderr,
            )
        mine(list(sources), corpus, settings)
    if benchmark is not None:
        check_no_leak(corpus, benchmark)
    # run_training writes the word list beside the tokenizer each stage trains with.
    tokenizer = prepare_tokenizer(corpus, out, None, recipe.vocab_size)
    if prepare_only:
        return {"status": "prepared", "hardware": kind}

    if kind == "cpu" and recipe.train.mixed_precision == "bf16" and not cpu_has_bf16():
        print(
            "codemt recipe: this CPU has no bfloat16 instructions: training in float32 "
            "(slower than the recipe's bf16, same model)",
            file=sys.stderr,
        )
        recipe = replace(recipe, train=replace(recipe.train, mixed_precision="no"))
    checkpoint = None
    for stage, target in (
        ("pretrain", recipe.pretrain_tokens),
        ("multimode", recipe.multimode_tokens),
    ):
        if target <= 0:  # a stage this recipe leaves out
            continue
        run_dir = out / stage
        # With `finish`, no more training: the stage as far as it got.
        if not finish and _trained_tokens(run_dir) < target:
            if deadline is not None and deadline - time.monotonic() <= 60:
                return {"status": "stopped", "stage": stage, "hardware": kind}
            train_stages(
                corpus,
                run_dir,
                recipe.examples,
                recipe.batching,
                {stage: recipe.stage_settings(stage)},
                tokenizer=tokenizer,
                init=checkpoint,
                resume=True,
                cache_dir=out / "tokens",
                progress=progress,
                deadline=deadline,
            )
            if _trained_tokens(run_dir) < target:
                return {"status": "stopped", "stage": stage, "hardware": kind}
        checkpoint = run_dir
    if train_only:
        return {"status": "trained", "hardware": kind}

    evaluation, model = out / "eval" / "metrics.json", out / "model"
    # The evaluation is reused only for the checkpoint it measured (a --finish before the
    # end measured an earlier one).
    evaluated = out / "eval" / "checkpoint.txt"
    shipped = resolve_checkpoint(Path(checkpoint)).relative_to(out).as_posix()
    if evaluation.is_file() and evaluated.is_file() and evaluated.read_text().strip() == shipped:
        export_model(Path(checkpoint), corpus, evaluation, model)
    else:
        # Measure what ships: the exported model, in the form the commands load (the int8
        # CTranslate2 export when ctranslate2 is installed, several times faster than PyTorch).
        export_model(Path(checkpoint), corpus, None, model)
        _evaluate(model, corpus, benchmark, out / "eval", eval_limit)
        evaluated.write_text(shipped + "\n", encoding="utf-8")
        attach_evaluation(model, evaluation)
    return {"status": "done", "hardware": kind, "model": str(model)}


def _has_checkpoint(run_dir: Path) -> bool:

    try:
        resolve_checkpoint(run_dir)
    except FileNotFoundError:
        return False
    return True


def _evaluate(model: Path, corpus: Path, benchmark: Path | None, out: Path, limit: int) -> None:
    """Evaluate every mode on the corpus's test split (those it has examples of), and
    docstrings on `benchmark`, on the form `auto` runs everywhere: the export where there is
    one, else the float32 weights (not bfloat16, which `auto` takes only on CPUs with
    bfloat16 instructions)."""
    backend = select_backend(model)[0]
    translator = Translator.load(model, backend="torch" if backend == "torch-bf16" else backend)
    data = load_data(corpus, "test")
    modes = [m for m in all_modes() if data.examples(m, 1)]
    # `limit` examples for each target from all other features (the headline modes), a
    # fifth as many for the modes with fewer sources.
    headline = [m for m in modes if parse_mode(m.target) == m]
    report, results = evaluate(translator, data, headline, limit=limit)
    others = [m for m in modes if m not in headline]
    if others:
        more_report, more = evaluate(translator, data, others, limit=max(limit // 5, 1))
        report["modes"].update(more_report["modes"])
        results.update(more)
    if benchmark is not None:
        bench = load_data(benchmark)
        report["benchmark"], bench_results = evaluate(translator, bench, [parse_mode("docstring")])
        write_results(out / "benchmark", bench_results)
    if translator.reads_neighbors:
        # With project memory too: each method's neighbours among the other methods of its
        # repository (leave-one-out), for the two headline tasks and the benchmark.
        tasks = [parse_mode("docstring"), parse_mode("body")]
        report["with_memory"], memory_results = evaluate(
            translator, data, tasks, limit=limit, memory="repo"
        )
        write_results(out / "memory", memory_results)
        if benchmark is not None:
            report["with_memory"]["benchmark"], bench_results = evaluate(
                translator, bench, [parse_mode("docstring")], memory="repo"
            )
            write_results(out / "memory" / "benchmark", bench_results)
    write_results(out, results)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "metrics.json")
