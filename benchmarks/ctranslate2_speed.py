"""CTranslate2 against PyTorch: docstrings per second, latency, agreement and peak memory.

One model in three forms: the PyTorch checkpoint (float32) and its `codemt export`s to
CTranslate2 in float32 and int8. By default the model is a `small` preset with random
weights (speed does not depend on what the weights learned; random weights hardly ever emit
</s>, so every docstring runs the full `--max-new-tokens` and every row decodes the same
number of tokens); `--model` takes a trained checkpoint instead, for meaningful BLEU.

Inputs: the CodeXGLUE sample (`codemt.evaluate.load_data`) and methods with docstrings of a
few standard-library modules (or of a corpus's test split, `--corpus`); every system
writes the summary docstring of each from its signature and body, greedy and with 4
beams, `--batch-size` at a time. Each system runs in
a fresh process (`--threads` threads: torch.set_num_threads, CTranslate2's intra_threads),
which reports its peak resident memory. Columns:

    docstrings/s   over all inputs; ratio: against torch float32, same decoding, same run
    latency        one method alone (batch 1), median over `--latency-methods` methods
    sBLEU4, RL-F   smoothed BLEU-4 and ROUGE-L F against the references (codemt.evaluate)
    same           share of outputs identical to torch float32's, same decoding
    loaded, peak   the process's peak RSS once the model is loaded, and at the end (at
                   batch 16 with 4 beams, activations for long sources dominate the peak)

    python benchmarks/ctranslate2_speed.py [--model CKPT] [--stdlib-methods 80] [--threads 2]
        [--corpus RUN/corpus]   (the extra methods from its test split, never trained on)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codemt.generation import GenerationSettings
from codemt.translate import Translator

SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared/benchmarks/codexglue_python_valid_sample.jsonl"
)
# (row name, backend, export quantization or None for the checkpoint itself)
SYSTEMS = [
    ("torch float32", "torch", None),
    ("ct2 float32", "ctranslate2", "float32"),
    ("ct2 int8", "ctranslate2", "int8"),
]
DECODINGS = {"greedy": 1, "beam 4": 4}
SOURCES = ("signature", "body")


def load_inputs(
    sample: Path, stdlib_methods: int, corpus: Path | None = None
) -> tuple[list[dict], list[str], int]:
    """Methods and their reference summaries: the CodeXGLUE sample, then `stdlib_methods`
    methods of a few standard-library modules or, with `corpus`, of its test split."""
    from translate_speed import SOURCES as MODULES  # the benchmark beside this one
    from translate_speed import STDLIB

    from codemt.evaluate import load_data
    from codemt.examples import Mode
    from codemt.source.docstrings import summary_of
    from codemt.source.extract import extract_methods
    from codemt.source.reading import parse_with_repairs

    data = load_data(sample)
    chosen = data.examples(Mode(SOURCES, "docstring"))
    records = [data.records[i] for i in chosen]
    references = [data.references[i]["docstring"] for i in chosen]
    if corpus is not None:
        test = load_data(corpus, "test")
        local = test.examples(Mode(SOURCES, "docstring"), stdlib_methods)  # a fixed sample
        records += [test.records[i] for i in local]
        references += [test.references[i]["docstring"] for i in local]
        return records, references, len(chosen)
    stdlib = []
    for name in (*MODULES, "json/decoder.py", "email/message.py", "configparser.py"):
        tree = parse_with_repairs((STDLIB / name).read_text(encoding="utf-8"))[0]
        stdlib += [
            r
            for _, r in extract_methods(tree, repo="stdlib", path=name)
            if r["body"] and summary_of(r["docstring"])
        ]
    stdlib = stdlib[:stdlib_methods]
    references += [summary_of(r["docstring"]) for r in stdlib]
    return records + stdlib, references, len(records)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Linux's VmHWM rather than getrusage's ru_maxrss: exec records the forking parent's peak
    in the child's ru_maxrss, so every worker would report at least this script's own peak
    (the torch model it exported from included).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB, except on macOS


def worker(args: argparse.Namespace) -> None:
    """Measure one system on the inputs (a JSON file) and print its results as JSON."""
    inputs = json.loads(Path(args.inputs).read_text(encoding="utf-8"))
    if args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    translator = Translator.load(
        args.worker_model, backend=args.backend, device="cpu", threads=args.threads
    )
    loaded_rss_mb = peak_rss_mb()
    translator.translate_batch(inputs[:2], "docstring", sources=SOURCES)  # first calls allocate
    result: dict = {"backend": translator.backend.name, "loaded_rss_mb": loaded_rss_mb}
    for decoding, beams in DECODINGS.items():
        settings = GenerationSettings(
            num_beams=beams, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
        t0 = time.perf_counter()
        outputs = translator.translate_batch(
            inputs, "docstring", sources=SOURCES, settings=settings
        )
        elapsed = time.perf_counter() - t0
        latencies = []
        for method in inputs[: args.latency_methods]:
            t0 = time.perf_counter()
            translator.translate_batch([method], "docstring", sources=SOURCES, settings=settings)
            latencies.append(time.perf_counter() - t0)
        result[decoding] = {
            "rate": len(inputs) / elapsed,
            "latency": statistics.median(latencies),
            "outputs": [t.text for t in outputs],
        }
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def run_system(folder: Path, backend: str, inputs: Path, args: argparse.Namespace) -> dict:
    """One system's results, measured in a fresh process."""
    command = [sys.executable, __file__, "--worker-model", str(folder), "--backend", backend]
    command += ["--inputs", str(inputs), "--threads", str(args.threads)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size)]
    command += ["--latency-methods", str(args.latency_methods)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a checkpoint (default: random `small`)")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="CodeXGLUE jsonl")
    parser.add_argument(
        "--stdlib-methods", type=int, default=80, metavar="N", help="methods beside CodeXGLUE's"
    )
    parser.add_argument(
        "--corpus", type=Path, help="take those methods from this corpus's test split instead"
    )
    parser.add_argument("--max-new-tokens", type=int, default=24, metavar="N")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N")
    parser.add_argument("--latency-methods", type=int, default=5, metavar="N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokenizer-files", type=int, default=400, help=argparse.SUPPRESS)
    parser.add_argument("--worker-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_model:
        worker(args)
        return

    from codemt.evaluate import score_texts
    from codemt.export import export_ctranslate2
    from codemt.model import resolve_checkpoint

    records, references, codexglue = load_inputs(args.sample, args.stdlib_methods, args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            checkpoint, described = resolve_checkpoint(args.model), str(args.model)
        else:
            from translate_speed import PRESET, random_model

            vocab = random_model(Path(tmp), args.tokenizer_files)
            checkpoint, described = Path(tmp) / "model", f"{PRESET}, random weights, vocab {vocab}"
        folders = {None: checkpoint}
        for _, _, quantization in SYSTEMS[1:]:
            folders[quantization] = export_ctranslate2(
                checkpoint, Path(tmp) / quantization, quantization
            )
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps(records), encoding="utf-8")
        t0 = time.perf_counter()
        results = {name: run_system(folders[q], b, inputs, args) for name, b, q in SYSTEMS}
        elapsed = time.perf_counter() - t0

    print(
        f"model: {described}; {len(records)} methods ({codexglue} CodeXGLUE, "
        f"{len(records) - codexglue} {'corpus test split' if args.corpus else 'stdlib'}), "
        f"summary docstrings from signature + "
        f"body, up to {args.max_new_tokens} new tokens, batch {args.batch_size}, "
        f"{args.threads} threads, cpu; measured in {elapsed:.0f} s"
    )
    header = f"{'system':<14} {'decoding':<8} {'docstrings/s':>12} {'ratio':>6} {'latency':>8}"
    print(f"{header} {'sBLEU4':>6} {'RL-F':>6} {'same':>6} {'loaded':>7} {'peak RSS':>8}")
    for decoding in DECODINGS:
        baseline = results[SYSTEMS[0][0]][decoding]
        for name, _, _ in SYSTEMS:
            row = results[name][decoding]
            metrics = score_texts(row["outputs"], references)
            pairs = zip(row["outputs"], baseline["outputs"], strict=True)
            same = statistics.mean(a == b for a, b in pairs)
            print(
                f"{name:<14} {decoding:<8} {row['rate']:>12.2f} "
                f"{row['rate'] / baseline['rate']:>5.2f}x {1000 * row['latency']:>6.0f}ms "
                f"{metrics['smoothed_bleu4']:>6.2f} {metrics['rougeL_f']:>6.2f} {same:>6.1%} "
                f"{results[name]['loaded_rss_mb']:>5.0f}MB {results[name]['peak_rss_mb']:>6.0f}MB"
            )


if __name__ == "__main__":
    main()
