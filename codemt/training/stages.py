"""A corpus in, trained checkpoints out: the stages `codemt train` runs.

Wires the stages together: the tokenizer (given, or trained on the corpus first), the
token caches of the train and valid splits, the examples of each stage (span masking,
then multi-mode translation), and the training loop. With stage "both", the multi-mode
stage starts from the pre-trained weights. Every setting can come from a YAML file
(`load_config`), with sections `train`, `examples`, `batching` and per-stage overrides
`pretrain` / `multimode` (of `train` settings); `overrides` (the command line's flags)
win over the file.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from codemt import tokenizer as tokenization
from codemt.corpus import Corpus, read_manifest
from codemt.data import BatchSettings, ExampleData
from codemt.examples import ExampleSettings, Vocabulary, all_modes
from codemt.model import get_preset, tokenizer_files
from codemt.token_cache import TokenCache
from codemt.tokenizer import load_tokenizer
from codemt.training.config import TrainSettings
from codemt.words import corpus_words, write_words

STAGE_CHOICES = ("pretrain", "multimode", "both")


def _settings_from(cls, values: dict, where: str):
    """Build a settings dataclass, naming the unknown keys of a config section."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if "betas" in values:
        values = {**values, "betas": tuple(values["betas"])}
    return cls(**values)


def _task_data(cache, vocab, stage: str, examples, batching, mode_name: str):
    """Validation batches of one mode alone, of every method that has it (a docstring target
    asked for as a summary, as the CodeXGLUE task has it), to select a run's best checkpoint on."""
    names = [m.name for m in all_modes()]
    if stage != "multimode" or mode_name not in names:
        raise ValueError(
            f"select_on {mode_name!r}: expected a mode of multi-mode training, one of "
            f"{', '.join(names)}"
        )
    weights = {name: float(name == mode_name) for name in names}
    only = replace(
        examples,
        mode_weights=weights,
        undocumented_share=1.0,
        undocumented_kept=1.0,
        summary_fraction=1.0,
    )
    data = ExampleData(cache, vocab, stage, only, batching)
    if not len(cache) or not data.num_batches(0):
        raise ValueError(f"select_on {mode_name!r}: the validation split has no such examples")
    return data


def load_config(path: Path | None) -> dict:
    """Read a YAML training config; a missing or malformed file is a clear error."""
    if path is None:
        return {}
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping with sections train, examples, batching")
    allowed = {"train", "examples", "batching", "pretrain", "multimode"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    return config


def prepare_tokenizer(data: Path, out: Path, tokenizer: Path | None, vocab_size: int) -> Path:
    """The tokenizer folder to train with: the one given, or one trained on `data` into `out/tokenizer`."""
    if tokenizer is not None:
        tokenization.load_tokenizer(tokenizer)  # fails early, naming the path
        return tokenizer.parent if tokenizer.is_file() else tokenizer
    folder = out / "tokenizer"
    if (folder / tokenization.TOKENIZER_FILE).is_file():
        return folder
    print(f"training a tokenizer of {vocab_size} tokens on {data} ...", file=sys.stderr)
    settings = tokenization.TokenizerSettings(vocab_size=vocab_size)
    tok = tokenization.train_tokenizer(tokenization.corpus_texts(data), settings)
    tokenization.save_tokenizer(tok, folder)
    return folder


def prepare_words(tokenizer_dir: Path, data: Path, out: Path) -> Path:
    """The tokenizer folder with the word list of `data`'s training docstrings beside it
    (`codemt.words`), so that every checkpoint carries it: `out/tokenizer`, where a given
    folder elsewhere is copied first (and left as it is). The list is written for `data`
    every time (seconds): a checkpoint's folder given as the tokenizer of a fine-tune on
    another corpus holds its own corpus' list."""
    folder = out / "tokenizer"
    if not folder.exists() or not folder.samefile(tokenizer_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for name in tokenizer_files(tokenizer_dir):
            shutil.copy2(tokenizer_dir / name, folder / name)
    write_words(corpus_words(data), folder)
    return folder


def settings_from_config(
    config: dict, overrides: dict, preset: str, stage: str
) -> tuple[ExampleSettings, BatchSettings, dict[str, TrainSettings]]:
    """The typed settings a config file's sections (`load_config`) and the command line's
    `overrides` (which win) give: the examples, the batching, and each stage's training
    settings, in the order the stages run. Raises ValueError naming an unknown setting."""
    if stage not in STAGE_CHOICES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGE_CHOICES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    shape = get_preset(preset)
    examples_config = {
        "max_source_tokens": shape.context,
        "max_target_tokens": max(shape.context // 2, 8),
        **config.get("examples", {}),
    }
    examples = _settings_from(ExampleSettings, examples_config, "examples")
    batching = _settings_from(BatchSettings, config.get("batching", {}), "batching")
    stages = {}
    for name in ["pretrain", "multimode"] if stage == "both" else [stage]:
        values = {**config.get("train", {}), **config.get(name, {}), **overrides, "preset": preset}
        if name != "multimode":  # selecting on a task is multi-mode training's
            values.pop("select_on", None)
        stages[name] = _settings_from(TrainSettings, values, f"train settings of stage {name}")
    return examples, batching, stages


def run_training(
    data: Path,
    out: Path,
    *,
    preset: str,
    stage: str,
    tokenizer: Path | None = None,
    config: dict | None = None,
    overrides: dict | None = None,
    **options: Any,
) -> Path | None:
    """`codemt train`: train `preset` on the corpus `data` in the run folder `out` with the
    settings of a config file's sections and the command line's `overrides` (they win);
    `options` are `train_stages`'. Returns the final checkpoint."""
    if stage not in STAGE_CHOICES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGE_CHOICES)}")
    read_manifest(data)
    examples, batching, stages = settings_from_config(config or {}, overrides or {}, preset, stage)
    return train_stages(data, out, examples, batching, stages, tokenizer=tokenizer, **options)


def train_stages(
    data: Path,
    out: Path,
    examples: ExampleSettings,
    batching: BatchSettings,
    stages: dict[str, TrainSettings],
    *,
    tokenizer: Path | None = None,
    init: Path | None = None,
    resume: bool = False,
    cache_dir: Path | None = None,
    valid_limit: int = 2000,
    progress: bool = True,
    deadline: float | None = None,
) -> Path | None:
    """Train the `stages` (name -> settings, in order) on the corpus `data` in the run
    folder `out` (one stage: `out` itself; several: a subfolder each, each stage starting
    from the one before); return the final checkpoint.

    `deadline` (a `time.monotonic()` instant) bounds the whole call, the token caches'
    building included: training stops resumably there, and when the caches took all the
    time it does not start (the return is then `init`).
    """
    opened = Corpus.open(data)
    shape = get_preset(next(iter(stages.values())).preset)
    tokenizer_dir = prepare_words(prepare_tokenizer(data, out, tokenizer, shape.vocab), data, out)
    tok = load_tokenizer(tokenizer_dir)
    vocab = Vocabulary.from_tokenizer(tok)
    cache_root = cache_dir or out / "cache"
    train_cache = TokenCache.build(opened, "train", tok, cache_root)
    valid_cache = TokenCache.build(opened, "valid", tok, cache_root, limit=valid_limit)

    from codemt.training.loop import train  # torch: not for `codemt train --help`

    checkpoint = init
    for name, settings in stages.items():
        train_data = ExampleData(train_cache, vocab, name, examples, batching)
        valid_data = (
            # Every valid method, whatever the share trained on: losses stay comparable.
            ExampleData(
                valid_cache,
                vocab,
                name,
                replace(examples, undocumented_share=1.0, undocumented_kept=1.0),
                batching,
            )
            if len(valid_cache)
            else None
        )
        task_data = None
        if settings.select_on is not None:
            # The whole split: one mode of `valid_limit` methods is too few to go by.
            whole = TokenCache.build(opened, "valid", tok, cache_root)
            task_data = _task_data(whole, vocab, name, examples, batching, settings.select_on)
        run_dir = out / name if len(stages) > 1 else out
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"stage {name}: the time ran out building the token caches", file=sys.stderr)
                return checkpoint
            settings = replace(settings, max_time=min(settings.max_time or left, left))
        print(
            f"stage {name}: {len(train_cache)} methods, {train_data.num_batches(0)} batches an epoch, "
            f"run folder {run_dir}",
            file=sys.stderr,
        )
        checkpoint = train(
            train_data,
            settings,
            run_dir,
            tokenizer_dir,
            valid_data=valid_data,
            task_data=task_data,
            init=checkpoint,
            resume=resume,
            stage=name,
            modes={"examples": asdict(examples), "batching": asdict(batching)},
            corpus_digest=opened.digest,
            progress=progress,
            tokenizer=tok,
        )
    return checkpoint
