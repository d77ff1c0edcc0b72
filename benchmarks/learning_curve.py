"""The learning curve of a training run: docstring quality against training time.

Scores each given checkpoint (a `step-NNNNNN` folder, or a folder of them) on docstring
generation for a CodeSearchNet/CodeXGLUE jsonl file with `codemt.evaluate`, beside the
trivial baselines, and reads from the checkpoint how long it had trained (`train_seconds`
of its saved progress: wall-clock seconds of the training loop on its machine) and on how
many tokens. Prints a table, and writes it as JSON and as an SVG chart if asked:

    python benchmarks/learning_curve.py ~/.cache/codemt/runs/default-curve \\
        --data ../shared/benchmarks/codexglue_python_valid_sample.jsonl \\
        --json curve.json --svg curve.svg

Greedy decoding by default (`--beams 4 --max-new-tokens 128` for the numbers `codemt
evaluate` reports), so that a dozen checkpoints score in minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codemt.evaluate import evaluate_baselines, evaluate_mode, load_data, parse_mode
from codemt.generation import GenerationSettings
from codemt.translate import Translator

METRICS = ("smoothed_bleu4", "rougeL_f")


def checkpoints(paths: list[Path]) -> list[Path]:
    """The checkpoint folders among `paths` and their `step-*` children, oldest first."""
    found = []
    for path in paths:
        if (path / "codemt.json").is_file():
            found.append(path)
        else:
            found.extend(
                p
                for p in path.glob("step-*")
                if not p.name.endswith(".tmp") and (p / "codemt.json").is_file()
            )
    if not found:
        raise SystemExit(f"no checkpoint in {', '.join(map(str, paths))}")
    return sorted(found, key=lambda p: progress(p)["step"])


def progress(checkpoint: Path) -> dict:
    """The training progress saved with a checkpoint."""
    meta = json.loads((checkpoint / "codemt.json").read_text(encoding="utf-8"))
    return meta["progress"]


def curve(paths: list[Path], data_path: Path, settings: GenerationSettings) -> dict:
    """Each checkpoint's step, tokens, training hours and docstring metrics."""
    data = load_data(data_path)
    mode = parse_mode("docstring")
    rows = []
    for checkpoint in checkpoints(paths):
        translator = Translator.load(checkpoint, settings=settings, backend="torch")
        metrics = evaluate_mode(translator, data, mode).metrics
        state = progress(checkpoint)
        row = {
            "checkpoint": checkpoint.name,
            "step": state["step"],
            "tokens": state["tokens"],
            "train_hours": state["train_seconds"] / 3600,
            **{m: metrics[m] for m in METRICS},
        }
        print(
            f"{row['checkpoint']:>12}  {row['tokens'] / 1e6:7.2f}M tokens  "
            f"{row['train_hours']:5.2f} h  sBLEU-4 {row['smoothed_bleu4']:5.2f}  "
            f"ROUGE-L F {row['rougeL_f']:5.2f}",
            flush=True,
        )
        rows.append(row)
    baselines = {
        name: {m: scores[m] for m in METRICS} for name, scores in evaluate_baselines(data).items()
    }
    return {
        "data": str(data_path),
        "beams": settings.num_beams,
        "rows": rows,
        "baselines": baselines,
    }


def svg(result: dict, width: int = 640, height: int = 360) -> str:
    """A line chart of both metrics against training hours, baselines dashed."""
    rows = result["rows"]
    left, right, top, bottom = 56, 150, 20, 44
    x_max = max([r["train_hours"] for r in rows] + [1e-9])
    values = [r[m] for r in rows for m in METRICS]
    values += [b[m] for b in result["baselines"].values() for m in METRICS]
    y_max = max(values + [1.0]) * 1.1

    def x(hours: float) -> float:
        return left + (width - left - right) * hours / x_max

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * value / y_max

    colours = {"smoothed_bleu4": "#1f77b4", "rougeL_f": "#d62728"}
    labels = {"smoothed_bleu4": "smoothed BLEU-4", "rougeL_f": "ROUGE-L F"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">'
        f"training hours (wall clock)</text>",
    ]
    for tick in range(0, int(y_max) + 1, 5):
        parts.append(
            f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick}</text>'
            f'<line x1="{left}" y1="{y(tick)}" x2="{width - right}" y2="{y(tick)}" '
            f'stroke="#ddd"/>'
        )
    for i in range(5):
        hours = x_max * i / 4
        parts.append(
            f'<text x="{x(hours)}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{hours:.2f}</text>"
        )
    for n, metric in enumerate(METRICS):
        colour = colours[metric]
        points = " ".join(f"{x(r['train_hours']):.1f},{y(r[metric]):.1f}" for r in rows)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        best = max(b[metric] for b in result["baselines"].values()) if result["baselines"] else 0
        parts.append(
            f'<line x1="{left}" y1="{y(best)}" x2="{width - right}" y2="{y(best)}" '
            f'stroke="{colour}" stroke-dasharray="4 4"/>'
        )
        parts.append(
            f'<text x="{width - right + 8}" y="{top + 16 + 36 * n}" fill="{colour}">'
            f"{labels[metric]}</text>"
            f'<text x="{width - right + 8}" y="{top + 30 + 36 * n}" fill="{colour}">'
            f"(dashed: best baseline)</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoints or folders of them")
    parser.add_argument("--data", type=Path, required=True, help="CodeSearchNet jsonl")
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write the table here")
    parser.add_argument("--svg", type=Path, help="write the chart here")
    args = parser.parse_args()
    settings = GenerationSettings(num_beams=args.beams, max_new_tokens=args.max_new_tokens)
    result = curve(args.paths, args.data, settings)
    for name, scores in result["baselines"].items():
        print(
            f"baseline {name}: sBLEU-4 {scores['smoothed_bleu4']:.2f}  ROUGE-L F {scores['rougeL_f']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.svg:
        args.svg.write_text(svg(result), encoding="utf-8")


if __name__ == "__main__":
    main()
