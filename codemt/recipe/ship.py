"""The model that ships: its folder (weights, tokenizer, word list, manifest, training log,
evaluation, CTranslate2 form where it runs) and its card."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

from codemt.backends import CTRANSLATE2_SUBFOLDER
from codemt.export import export_ctranslate2
from codemt.model import INT8_WEIGHTS, count_parameters, has_pointer, load_checkpoint, write_model

SHIPPED_QUANTIZATION = "int8"  # of the CTranslate2 export shipped beside the weights
# The shipped weights are float16 up to this many bytes (20M parameters), else 8-bit
# (`codemt.model.INT8_WEIGHTS`, half the size): git holds at most 60 MB of model, and 8
# bits cost a little quality (docs/default-model.md), so only where needed. (A model
# without a copy mechanism ships its 8-bit CTranslate2 form too, a byte a parameter more:
# for one of those the budget holds about 30M parameters, not 60M.)
FLOAT16_SHIPPED_BYTES = 40_000_000
SHIPPED_BYTES = 60_000_000  # the most a shipped model folder may hold (warned above)


def export_model(checkpoint: Path, corpus: Path, evaluation: Path | None, out: Path) -> Path:
    """Write the shippable model: float16 weights (8-bit above `FLOAT16_SHIPPED_BYTES`),
    config, tokenizer, word list, codemt.json, the corpus manifest, the training log, the
    evaluation, a model card and (with ctranslate2 installed, for a model without a copy
    mechanism, which CTranslate2 cannot run) the CTranslate2 export; atomically (temp
    folder, then rename)."""
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
    meta = json.loads((model / "codemt.json").read_text(encoding="utf-8"))
    manifest = json.loads((model / "corpus_manifest.json").read_text(encoding="utf-8"))
    progress = meta.get("progress", {})
    splits = manifest["splits"]
    stored = "8 bits with a scale per row" if (model / INT8_WEIGHTS).is_file() else "float16"
    lines = [
        "# codemt default model",
        "",
        f"A `{meta['preset']}` T5 encoder-decoder ({meta['parameters'] / 1e6:.1f}M parameters, "
        f"stored in {stored}, computing in float32, or bfloat16 where the CPU has it) that "
        "translates between the signature, docstring and body of Python functions (PyMT5's "
        "multi-mode task).",
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
            measured = (
                "its weights with PyTorch, computing in float32 (`--backend torch`; `auto` "
                "computes in bfloat16 on a CPU with bfloat16 instructions: "
                "docs/fast-inference.md)"
            )
            if (model / "ctranslate2").is_dir():
                measured += f"; the folder also holds an int8 CTranslate2 export{export}"
        lines += [
            "## Evaluation",
            "",
            f"`codemt evaluate` of this model, 4 beams, and 1 for a docstring written beside "
            f"its project's offered summaries (docstrings chosen among the candidates with "
            f"`--name-weight`; both as recorded in `evaluation.json`), on {measured}.",
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


def attach_evaluation(model: Path, evaluation: Path) -> None:
    """Put the evaluation into an exported model folder, then into its model card."""
    tmp = model / ".evaluation.json.tmp"
    shutil.copy2(evaluation, tmp)
    tmp.replace(model / "evaluation.json")
    tmp = model / ".README.md.tmp"
    tmp.write_text(model_card(model), encoding="utf-8")
    tmp.replace(model / "README.md")
