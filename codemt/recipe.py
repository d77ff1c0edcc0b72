"""`codemt recipe default`: the shipped default model, from nothing, in one command.

The whole pipeline, each step resumable: mine the corpus every machine has (the standard
library and the installed packages), train the tokenizer, span-masking pre-training
(where the recipe has it), multi-mode training, evaluation, export. The model size and
the training lengths come from the hardware (`RECIPES`); `--budget` bounds one run's
time, after which it checkpoints and stops, and the same command resumes where it
stopped, also after a kill. Training lengths are counted in tokens, so a run finishes the
same recipe whatever the number of sittings; `OUT/recipe.json` records the recipe, and a
run folder started with another one is refused rather than continued.

Evaluation data is never trained on: when a CodeSearchNet/CodeXGLUE file is given for
evaluation, the recipe refuses to go on if one of its repositories is among the mined
projects.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

SOURCES = ("python:stdlib", "python:site-packages")
SHIPPED_QUANTIZATION = "int8"  # of the CTranslate2 export shipped beside the weights
# The shipped weights are float16 up to this many bytes (20M parameters), else 8-bit
# (`codemt.model.INT8_WEIGHTS`, half the size): git holds at most 60 MB of model. 8 bits
# cost the GPU copy model 13.80 -> 13.69 smoothed BLEU-4 on the CodeXGLUE sample and
# 12.34 -> 12.28 on 300 valid docstrings: within noise, but not free, so only where needed.
# (A model without a copy mechanism ships its 8-bit CTranslate2 form too, a byte a
# parameter more: for one of those the budget holds about 30M parameters, not 60M.)
FLOAT16_SHIPPED_BYTES = 40_000_000
SHIPPED_BYTES = 60_000_000  # the most a shipped model folder may hold (warned above)


@dataclass(frozen=True)
class Recipe:
    """What the default model is for one kind of hardware."""

    preset: str
    vocab_size: int
    pretrain_tokens: int
    multimode_tokens: int
    examples: dict = field(default_factory=dict)
    batching: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    # Train/valid/test shares of the mined methods. Documented methods are what the model
    # lacks most; a twentieth of a corpus of installed packages still holds thousands of
    # docstrings to select and test on.
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)

    def __post_init__(self) -> None:
        if self.multimode_tokens <= 0 or self.pretrain_tokens < 0:
            raise ValueError(
                "a recipe needs multimode_tokens > 0 and pretrain_tokens >= 0 (0: no pre-training)"
            )

    def config(self) -> dict:
        """The `codemt train` config of this recipe."""
        return {"examples": self.examples, "batching": self.batching, "train": self.train}


# Quality per CPU-hour: short, information-dense sources (signature first, then as much of
# the body as fits), short targets, the CodeXGLUE task (signature+body -> docstring summary)
# weighted up, a short warm-up and a higher learning rate than the paper's large model.
# On a CPU an 8k vocabulary halves the output softmax, the largest single cost of a small
# decoder, and every token goes to multi-mode training: at a few CPU-hours, span-masking
# pre-training has not been shown to pay for the time it takes from the task itself. Four
# in five mined methods have no docstring for the task; an epoch draws a fifth of those,
# so about a third of the examples (not a ninth) write docstrings.
# Adafactor, as T5 was trained: with T5's initialisation (unit-scale embeddings, attention
# weights of std ~0.01) AdamW's same-size steps for every weight grew the encoder's residual
# stream ~80x in 1,200 steps, until 91% of every token's output was one shared direction
# and the decoder ignored its source (benchmarks/source_gain.py measured no gain at all);
# updates relative to each weight's scale kept it healthy (norm 54, not 126, at step 400).
# Sources follow the signature with its names as words (`name_words`: `# get dict (key)`):
# summaries reuse those words but the model must otherwise learn to respell `_dict` as
# ` dict`. Fine-tuning the GPU model 900 steps with and without them (same data, settings
# and token budget): docstring-task loss 4.234 -> 4.223, the name-word tokens' own loss
# 5.48 -> 5.32, source gain 0.46 -> 0.48 (benchmarks/source_gain.py); generated docstrings
# did not yet differ beyond noise (test split 10.88 -> 10.78 smoothed BLEU-4, 15.03 -> 15.30
# ROUGE-L F). A copy mechanism (`copy`, codemt.pointer) on top, same fine-tune: docstring
# task loss 4.233 -> 4.099 and the name words' 5.33 -> 4.32 at step 700, source gain
# 0.48 -> 0.64 (bodies 0.42 -> 0.59); docstrings again within noise (test split 10.73 /
# 15.09 -> 10.67 / 15.25, CodeXGLUE sample 12.53 / 16.51 -> 12.84 / 17.65). From scratch
# with the CPU recipe's settings it is what makes the model use its source early: after
# 800 steps source gain 0.05 -> 0.56, validation loss 4.41 -> 4.07, CodeXGLUE sample
# 10.40 / 9.54 -> 12.05 / 14.29 (docs/default-model.md). Such a model ships without
# the CTranslate2 form, which has no copy mechanism.
RECIPES = {
    "cpu": Recipe(
        preset="small",
        vocab_size=8192,
        pretrain_tokens=0,
        multimode_tokens=60_000_000,
        examples={
            "max_source_tokens": 128,
            "max_target_tokens": 96,
            "summary_fraction": 0.8,
            "undocumented_share": 0.2,
            "name_words": True,
            "mode_weights": {"signature+body->docstring": 10.0, "signature+docstring->body": 2.0},
        },
        batching={"max_tokens": 4096},
        train={
            "optimizer": "adafactor",
            "lr": 1e-2,
            "warmup_steps": 300,
            # Decaying to 0 at the token target, as on the GPU (see there): from the CPU
            # run's step 3,600, 300 more steps at linear decay against inverse-sqrt gave
            # 13.14 / 19.16 against 12.63 / 17.81 on the CodeXGLUE sample and 10.57 / 17.49
            # against 10.18 / 16.01 on 200 valid docstrings (docs/default-model.md, "Annealing").
            "schedule": "linear",
            "eval_every": 500,
            "save_every": 200,
            "log_every": 25,
            "copy": True,
            # On a CPU with bfloat16 instructions (AVX512-BF16, AMX) bf16 autocast trained
            # 1.4x the tokens/s of float32 (2 cores, medians of 2) with the same losses (train
            # and validation equal to 3 decimals at steps 25-475); `run_recipe` falls back
            # to float32 on other CPUs, where bfloat16 is emulated and slower.
            "mixed_precision": "bf16",
        },
    ),
    # One GPU: the same model and tokenizer (both fit the 60 MB that ships in git), longer
    # sources and targets, a quarter of the undocumented methods each epoch (the GPU has
    # tokens to spare and the docstring examples would otherwise repeat many times), the
    # same quarter every epoch (`undocumented_kept`): the copy that travels to a GPU machine
    # leaves the others out, and so fits its 64 MiB with the 144-package corpus (75.1 MB
    # with half of them, 65.2 MB with 30%; the 65-package corpus drew half of all of them
    # afresh each epoch, 240k undocumented to 102k documented methods, now 175k to 183k),
    # batches of 64k
    # tokens with more padding allowed (fuller batches, fewer optimiser steps to pay for).
    # Adafactor at T5's settings (lr 1e-2, 64k-token batches). `multimode_tokens` was first
    # what one H200 trained in 7.5 minutes (2,179 steps, 7 epochs, at 250-300k tokens/s;
    # it is now set by an H100's budget, see the end of this comment). Training on
    # to 5,157 steps (18 epochs) made bodies better but docstrings worse: the docstring task's
    # own validation loss rose from 4.45 to 5.09 while the all-mode one still fell, and its
    # CodeXGLUE smoothed BLEU-4 went from 11.9 to 9.7. So the run keeps the checkpoint with
    # the lowest docstring-task validation loss (`select_on`), and the target stayed there.
    # (Those runs mined an environment without the `corpus` extra: 37k documented methods
    # to train on, not 61k.) With the copy mechanism, from scratch on the larger corpus, one
    # H100 trained 97.9M tokens in 412 s and the docstring task's validation loss was still
    # falling (4.89, 4.31, 4.10 at steps 500, 1,000, 1,500): the target may now be too short.
    # The learning rate decays linearly to 0 at the token target (after the warm-up): the
    # `base` model, 82M tokens on one H200 at inverse-sqrt (docstring-task loss 3.97), went
    # from 12.04 / 18.46 to 13.64 / 20.79 smoothed BLEU-4 / ROUGE-L F on the CodeXGLUE sample
    # (9.61 / 15.47 -> 10.62 / 18.55 on 200 valid docstrings) with 22M more tokens decaying
    # linearly from its rate there (docs/default-model.md, "Annealing"). A run stopped by its budget before
    # the target ends with its rate part-way down: on the 65-package corpus, an 8.5-minute
    # budget on one H100 (203k tokens/s with validation, after 42 s building token caches)
    # stopped at 94.9M of 105.8M tokens, the rate at 14% of its peak; 2.1M more tokens
    # taking it to 0 raised valid docstrings from 12.90 / 18.93 to 13.28 / 19.71. So the
    # target is now 86M tokens, which one H100 trains in about 7 minutes, the decay ending
    # within such a budget with some 40 s to spare (an H200 finishes sooner). On the
    # 144-package corpus one H100 trained it in 347 s (1,467 steps): 13.89 / 21.96 on the
    # CodeXGLUE sample, below the CPU recipe's 3,814 steps of 4k tokens (14.37 / 22.74 at
    # 13.3M tokens). A step took ~0.2 s there with 16k-token batches too, so smaller
    # batches buy no more updates on a GPU until that per-step cost is found
    # (docs/training-speed.md).
    "gpu": Recipe(
        preset="small",
        vocab_size=8192,
        pretrain_tokens=0,
        multimode_tokens=86_000_000,
        examples={
            "max_source_tokens": 256,
            "max_target_tokens": 128,
            "summary_fraction": 0.8,
            "undocumented_share": 1.0,
            "undocumented_kept": 0.25,
            "name_words": True,
            "mode_weights": {"signature+body->docstring": 10.0, "signature+docstring->body": 2.0},
        },
        batching={"max_tokens": 65536, "max_padding": 0.2},
        train={
            "optimizer": "adafactor",
            "lr": 1e-2,
            "warmup_steps": 500,
            "schedule": "linear",
            "eval_every": 500,
            "save_every": 500,
            "log_every": 50,
            "mixed_precision": "bf16",
            "select_on": "signature+body->docstring",
            "copy": True,
        },
    ),
}


def pick_hardware(choice: str) -> str:
    """`cpu` or `gpu`: the one asked for, or what this machine has."""
    if choice != "auto":
        return choice
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _project(name: str) -> str:
    """A repository's project name: `pypi/Foo_Bar` and `owner/foo-bar` both give `foo-bar`."""
    return re.sub(r"[-_.]+", "-", name.rsplit("/", 1)[-1]).lower()


def missing_corpus_packages() -> list[str]:
    """What this environment lacks of codemt's `corpus` extra: a package missing, or one
    older than the extra asks for (as `django 4.2.1 (wants >=5)`).

    The recipe mines whatever is installed; the default model's corpus is the standard
    library plus codemt with all its extras, `corpus` above all (its reason to exist).
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(text) for text in metadata.requires("codemt") or []]
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return []
    wanted = [
        r
        for r in requirements
        if r.marker is not None
        and r.marker.evaluate({"extra": "corpus"})
        and not r.marker.evaluate({"extra": ""})
    ]
    if not wanted:
        return ["codemt[corpus] (the installed codemt's metadata has no such extra: reinstall it)"]
    missing = []
    for requirement in wanted:
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement.name} {version} (wants {requirement.specifier})")
    return missing


def check_no_leak(corpus: Path, benchmark: Path) -> None:
    """Refuse a corpus that holds a project of the evaluation file; warn when it was mined
    without keeping the file's methods out (`MineSettings.exclude`): other projects may
    have copied some of them."""
    from codemt.corpus import iter_batches, read_manifest

    excluded = read_manifest(corpus)["settings"].get("exclude", [])
    # By content: the corpus may have been mined where the file had another path.
    digest = hashlib.sha256(Path(benchmark).read_bytes()).hexdigest()
    if not any(isinstance(e, dict) and e.get("sha256") == digest for e in excluded):
        print(
            f"codemt recipe: warning: {corpus} was mined without excluding the methods of "
            f"{benchmark}: copies of them in other projects may be trained on. Mine it again "
            f"with `codemt mine ... --exclude {benchmark}` (or a new run folder does).",
            file=sys.stderr,
        )

    evaluated = set()
    with open(benchmark, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                evaluated.add(_project(json.loads(line).get("repo", "")))
    mined = set()
    for batch in iter_batches(corpus, columns=["repo"]):
        mined.update(batch.column("repo").unique().to_pylist())
    leaked = sorted(r for r in mined if _project(r) in evaluated)
    if leaked:
        raise ValueError(
            f"{benchmark} evaluates on projects that are in the training corpus ({', '.join(leaked)}); "
            f"uninstall them from this environment and rerun, or evaluate on other data"
        )


def copy_for_training(out: Path, dest: Path) -> int:
    """Write to `dest` the smallest copy of the prepared run folder `out` that trains: the
    recipe, the tokenizer, the corpus manifest and the train and valid shards with only the
    columns training reads (and `repo`, for the leak check) and, in the train split, only
    the methods training draws from (`ExampleSettings.undocumented_kept`), recompressed
    harder. Returns the bytes written. For a machine without network that trains what was
    mined here (the `corpus`-extra environment: 472 MB of shards, 62.8 MB so), with the recipe's
    `train_only` (`--train-only`): the copy has no test split, so the evaluation and export
    are done back here (`finish`). Its manifest is the whole corpus's, and other commands
    reading its shards would miss columns.
    """
    dest = Path(dest)
    check_copy_destination(dest)
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{out}: no tokenizer yet; prepare the run folder first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
    try:
        _copy_run(out, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.chmod(0o755)  # as a folder made with mkdir, not mkdtemp's owner-only
    if dest.exists():
        dest.rmdir()
    tmp.replace(dest)
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def check_copy_destination(dest: Path) -> None:
    """Refuse a destination for `copy_for_training` that is a file or a non-empty folder."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest} is not an empty folder: give a new folder to copy the run into")


def _copy_run(out: Path, tmp: Path) -> None:
    import pyarrow.parquet as pq

    from codemt.corpus import manifest_path, shard_dir, shard_paths
    from codemt.data import CACHED_COLUMNS

    corpus = out / "corpus"
    (tmp / "corpus").mkdir(parents=True)
    shutil.copy2(manifest_path(corpus), tmp / "corpus" / manifest_path(corpus).name)
    shards = tmp / "corpus" / shard_dir(corpus).relative_to(corpus)
    shards.mkdir()
    training = ["repo", *CACHED_COLUMNS]
    examples = json.loads((out / "recipe.json").read_text(encoding="utf-8"))["examples"]
    for split in ("train", "valid"):
        for path in shard_paths(corpus, split):
            table = pq.read_table(path, columns=training)
            if split == "train":  # validation keeps every method
                table = _kept_methods(table, examples.get("undocumented_kept", 1.0))
            if not examples.get("context", False):
                table = _without_context(table)
            # Level 19: 9% smaller than 9 on these shards, in seconds more.
            pq.write_table(table, shards / path.name, compression="zstd", compression_level=19)
    shutil.copytree(out / "tokenizer", tmp / "tokenizer")
    shutil.copy2(out / "recipe.json", tmp / "recipe.json")


def _kept_methods(table, kept: float):
    """`table` without the undocumented methods that training leaves out
    (`ExampleSettings.undocumented_kept`)."""
    import numpy as np
    import pyarrow as pa

    from codemt.data import method_keys

    if kept >= 1.0:
        return table
    keys = method_keys(
        table.column("signature").to_pylist(),
        [body or "" for body in table.column("body").to_pylist()],
    )
    documented = np.asarray(table.column("docstring_task").to_pylist(), dtype=bool)
    return table.filter(pa.array(documented | (keys < kept)))


def _without_context(table):
    """`table` with the context features (imports, decorators, the class's docstring) left
    empty, for a recipe whose examples do not use them: no example changes, and the imports,
    repeated for every method of a file, are most of the training columns' text."""
    import pyarrow as pa

    for name, empty in (("imports", []), ("decorators", []), ("class_docstring", "")):
        column = table.schema.get_field_index(name)
        field = table.schema.field(column)
        table = table.set_column(column, field, pa.array([empty] * len(table), field.type))
    return table


def _trained_tokens(run_dir: Path) -> int:
    """Tokens a stage's run has trained on so far (0 before its first checkpoint)."""
    from codemt.model import resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(run_dir, newest=True)
    except FileNotFoundError:
        return 0
    progress = json.loads((checkpoint / "state" / "progress.json").read_text(encoding="utf-8"))
    return int(progress["state"]["tokens"])


def export_model(checkpoint: Path, corpus: Path, evaluation: Path | None, out: Path) -> Path:
    """Write the shippable model: float16 weights (8-bit above `FLOAT16_SHIPPED_BYTES`),
    config, tokenizer, word list, codemt.json, the corpus manifest, the training log, the
    evaluation, a model card and (with ctranslate2 installed, for a model without a copy
    mechanism, which CTranslate2 cannot run) the CTranslate2 export; atomically (temp
    folder, then rename)."""
    from codemt.model import count_parameters, has_pointer, load_checkpoint, write_model

    loaded = load_checkpoint(checkpoint)
    checkpoint = loaded.path  # a run folder resolves to its best (else newest) checkpoint
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    int8 = 2 * count_parameters(loaded.model) > FLOAT16_SHIPPED_BYTES
    model = loaded.model if int8 else loaded.model.half()
    # The checkpoint lends its tokenizer files and word list (write_model takes no others).
    write_model(model, tmp, checkpoint, loaded.meta, int8=int8)
    shutil.copy2(corpus / "manifest.json", tmp / "corpus_manifest.json")
    # The run's whole log where there is one: a selected checkpoint's own stops at its step.
    for log in (checkpoint.parent / "train_log.csv", checkpoint / "train_log.csv"):
        if log.is_file():
            shutil.copy2(log, tmp / "train_log.csv")
            break
    if evaluation is not None and evaluation.is_file():
        shutil.copy2(evaluation, tmp / "evaluation.json")
    if not has_pointer(loaded.model.config) and importlib.util.find_spec("ctranslate2"):
        # The fast CPU form beside the weights: `Translator.load` picks it by itself.
        from codemt.backends import CTRANSLATE2_SUBFOLDER
        from codemt.export import export_ctranslate2

        fast = export_ctranslate2(checkpoint, tmp / CTRANSLATE2_SUBFOLDER, SHIPPED_QUANTIZATION)
        meta = json.loads((fast / "codemt.json").read_text(encoding="utf-8"))
        meta["export"]["source"] = "the model folder above this one"  # not this machine's path
        (fast / "codemt.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        print(f"exported the {SHIPPED_QUANTIZATION} CTranslate2 form too", file=sys.stderr)
    (tmp / "README.md").write_text(model_card(tmp), encoding="utf-8")
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    if size > SHIPPED_BYTES:
        print(
            f"warning: {out} holds {size / 1e6:.1f} MB, more than the {SHIPPED_BYTES / 1e6:.0f} "
            f"MB a model in git may take: lower FLOAT16_SHIPPED_BYTES or ship a smaller preset",
            file=sys.stderr,
        )
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _metrics_table(report: dict) -> list[str]:
    """Markdown rows of an evaluation report's modes and docstring baselines, for the card."""
    rows = list(report["modes"].items())
    rows += [(f"baseline: {k}", v) for k, v in report["baselines"]["docstring"].items()]
    lines = [
        "| | n | smoothed BLEU-4 | BLEU | ROUGE-L F | exact match | parses |",
        "|---" * 7 + "|",
    ]
    for name, m in rows:
        parses = f"{m['parse_rate']:.1f}%" if "parse_rate" in m else ""
        lines.append(
            f"| {name} | {m.get('n', '')} | {m['smoothed_bleu4']:.2f} | {m['bleu']:.2f} | "
            f"{m['rougeL_f']:.2f} | {m['exact_match']:.2f} | {parses} |"
        )
    return lines + [""]


def _learning_curve(train_log: Path) -> list[str]:
    """Markdown rows of the validation losses against training time, from the training log."""
    import csv

    if not train_log.is_file():
        return []
    with open(train_log, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("valid_loss") or r.get("task_loss")]
    if not rows:
        return []
    lines = [
        "Learning curve (validation loss: every mode, of up to 2,000 validation methods spread "
        "over the split; task loss: the mode the best checkpoint is selected on, alone, of every "
        "validation method that has it; minutes of training, its evaluations and checkpoints "
        "included):",
        "",
        "| step | tokens | minutes | train loss | validation loss | task loss |",
        "|---:|---:|---:|---:|---:|---:|",
    ]

    def number(row: dict, key: str) -> str:
        # A validation at a step that logs no training loss leaves that column empty.
        return f"{float(row[key]):.3f}" if row.get(key) else ""

    for r in rows:
        lines.append(
            f"| {int(r['step']):,} | {int(r['tokens']):,} | {float(r['elapsed_s']) / 60:.1f} | "
            f"{number(r, 'loss')} | {number(r, 'valid_loss')} | {number(r, 'task_loss')} |"
        )
    return lines + [""]


def model_card(model: Path) -> str:
    """The facts of an exported model as its `README.md`: corpus, training, evaluation.

    Hand checks of generated docstrings and bodies are the authors' to add below it.
    """
    from codemt.model import INT8_WEIGHTS

    meta = json.loads((model / "codemt.json").read_text(encoding="utf-8"))
    manifest = json.loads((model / "corpus_manifest.json").read_text(encoding="utf-8"))
    progress = meta.get("progress", {})
    splits = manifest["splits"]
    stored = "8 bits with a scale per row" if (model / INT8_WEIGHTS).is_file() else "float16"
    lines = [
        "# codemt default model",
        "",
        f"A `{meta['preset']}` T5 encoder-decoder ({meta['parameters'] / 1e6:.1f}M parameters, "
        f"stored in {stored}, computing in float32) that translates between the signature, "
        f"docstring and body of "
        f"Python functions (PyMT5's multi-mode task).",
        "",
        "## Training",
        "",
        "Rebuilt from nothing by `codemt recipe default` (see the project README).",
        "",
        f"- Corpus: `{' '.join(s['source'] for s in manifest['sources'])}` of the training "
        f"environment: {manifest['counts']['repos']} repositories, "
        f"{manifest['dedup']['methods_after']:,} methods after removing "
        f"{manifest['dedup']['exact_duplicates']:,} exact and "
        f"{manifest['dedup']['near_duplicates']:,} near duplicates; split by repository "
        f"into train {splits['train']['methods']:,} / valid {splits['valid']['methods']:,} / "
        f"test {splits['test']['methods']:,} methods "
        f"({splits['train']['docstring_task']:,} / {splits['valid']['docstring_task']:,} / "
        f"{splits['test']['docstring_task']:,} with a docstring fit for the task).",
        f"- Stage: {meta['stage']}"
        + (f", initialised from {Path(meta['init']).name}" if meta.get("init") else "")
        + f"; {progress.get('tokens', 0):,} tokens in {progress.get('step', 0):,} steps, "
        f"{progress.get('train_seconds', 0) / 3600:.1f} hours of training.",
        f"- Examples: {json.dumps(meta.get('modes', {}).get('examples', {}))}",
        "",
    ]
    lines += _learning_curve(model / "train_log.csv")
    evaluation_file = model / "evaluation.json"
    if evaluation_file.is_file():
        evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
        export = (
            " (`ctranslate2/`), which `Translator.load` and the commands pick by default when "
            "ctranslate2 is installed"
        )
        if evaluation.get("backend") == "ctranslate2":
            measured = f"its int8 CTranslate2 export{export}"
        else:  # (reports without a backend were all made with PyTorch)
            measured = "its weights with PyTorch, computing in float32"
            if (model / "ctranslate2").is_dir():
                measured += f"; the folder also holds an int8 CTranslate2 export{export}"
        lines += [
            "## Evaluation",
            "",
            f"`codemt evaluate` of this model, 4 beams (docstrings chosen among them with "
            f"`--name-weight` as recorded in `evaluation.json`), on {measured}.",
            "",
            "Our test split (repositories never trained on):",
            "",
            *_metrics_table(evaluation),
        ]
        if "benchmark" in evaluation:
            bench = evaluation["benchmark"]
            lines += [f"Docstrings on `{Path(bench['data']).name}`:", "", *_metrics_table(bench)]
        if "with_memory" in evaluation:
            memory = evaluation["with_memory"]
            lines += [
                "With project memory (`codemt evaluate --memory repo`: each method's "
                "neighbours among the other methods of its repository, leave-one-out; "
                "`nearest_docstring` takes the nearest one's summary as the prediction), "
                "our test split:",
                "",
                *_metrics_table(memory),
            ]
            if "benchmark" in memory:
                bench = memory["benchmark"]
                lines += [
                    f"With project memory, docstrings on `{Path(bench['data']).name}`:",
                    "",
                    *_metrics_table(bench),
                ]
    return "\n".join(lines)


def _check_same_recipe(out: Path, recipe: dict) -> None:
    """Record the recipe of a new run in `out/recipe.json`; refuse to continue another's."""
    recorded = out / "recipe.json"
    recipe = json.loads(json.dumps(recipe))  # as it reads back: tuples are lists
    if recorded.is_file():
        before = json.loads(recorded.read_text(encoding="utf-8"))
        if before != recipe:
            changed = sorted(
                k for k in recipe.keys() | before.keys() if before.get(k) != recipe.get(k)
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
    tmp.write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
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
    from codemt.mine.pipeline import MineSettings, mine
    from codemt.model import resolve_checkpoint
    from codemt.training.loop import cpu_has_bf16
    from codemt.training.stages import prepare_tokenizer, run_training

    # The budget bounds the whole run, the token caches' building included.
    deadline = None if budget is None else time.monotonic() + budget
    out = Path(out)
    kind = pick_hardware(hardware)
    recipe = recipe or RECIPES[kind]
    if preset is not None:
        from codemt.model import get_preset

        get_preset(preset)  # a clear error for an unknown one
        recipe = replace(recipe, preset=preset)
    if dropout is not None:
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout != recipe.train.get("dropout", 0.0):  # --dropout 0 is the recipe itself
            recipe = replace(recipe, train={**recipe.train, "dropout": dropout})
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
    _check_same_recipe(out, {"hardware": kind, **asdict(recipe)})
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

    config = recipe.config()
    if kind == "cpu" and config["train"].get("mixed_precision") == "bf16" and not cpu_has_bf16():
        print(
            "codemt recipe: this CPU has no bfloat16 instructions: training in float32 "
            "(slower than the recipe's bf16, same model)",
            file=sys.stderr,
        )
        config = {**config, "train": {**config["train"], "mixed_precision": "no"}}
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
            run_training(
                corpus,
                run_dir,
                preset=recipe.preset,
                stage=stage,
                tokenizer=tokenizer,
                config=config,
                overrides={"max_tokens": target},
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
        # CTranslate2 export when ctranslate2 is installed, 4-5x faster than PyTorch here).
        export_model(Path(checkpoint), corpus, None, model)
        _evaluate(model, corpus, benchmark, out / "eval", eval_limit)
        evaluated.write_text(shipped + "\n", encoding="utf-8")
        _attach_evaluation(model, evaluation)
    return {"status": "done", "hardware": kind, "model": str(model)}


def _has_checkpoint(run_dir: Path) -> bool:
    from codemt.model import resolve_checkpoint

    try:
        resolve_checkpoint(run_dir)
    except FileNotFoundError:
        return False
    return True


def _attach_evaluation(model: Path, evaluation: Path) -> None:
    """Put the evaluation into an exported model folder, then into its model card."""
    tmp = model / ".evaluation.json.tmp"
    shutil.copy2(evaluation, tmp)
    tmp.replace(model / "evaluation.json")
    tmp = model / ".README.md.tmp"
    tmp.write_text(model_card(model), encoding="utf-8")
    tmp.replace(model / "README.md")


def _evaluate(model: Path, corpus: Path, benchmark: Path | None, out: Path, limit: int) -> None:
    """Evaluate every mode on the corpus's test split (those it has examples of), and
    docstrings on `benchmark`."""
    from codemt.evaluate import evaluate, load_data, parse_mode, write_results
    from codemt.examples import all_modes
    from codemt.translate import Translator

    translator = Translator.load(model)
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
