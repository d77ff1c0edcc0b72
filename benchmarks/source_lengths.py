"""What a source-length cap buys in training speed for the docstring task.

The encoder pays for every source token. For the methods of a corpus split that have a
docstring fit for the task, this tokenizes signature + body as the CodeXGLUE task feeds
them (summary target: the docstring's first paragraph) and reports, for each cap on the
source: the share of methods whose whole source fits, the mean tokens per example after
truncation (source + target), and how many examples a second that gives at a measured
training speed in tokens/s, relative to no cap.

    python benchmarks/source_lengths.py CORPUS --tokenizer TOK [--tokens-per-s 1500]
"""

from __future__ import annotations

import argparse
import statistics

from codemt.corpus import iter_records
from codemt.source.docstrings import summary_of
from codemt.tokenizer import load_tokenizer

CAPS = (64, 96, 128, 192, 256, 512, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=20000, help="methods to measure")
    parser.add_argument("--tokens-per-s", type=float, default=1500.0)
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.tokenizer)
    sources, targets = [], []
    for record in iter_records(args.corpus, args.split):
        if record.get("docstring_task") and record["body"]:
            sources.append(record["signature"] + "\n" + record["body"])
            targets.append(summary_of(record["docstring"]))
        if len(sources) >= args.limit:
            break
    # Control tokens: target and style codes, two feature markers and </s> on the source,
    # </s> on the target. Training tokenizes each feature alone and cuts at whole lines:
    # these lengths are within a few tokens of what it builds.
    source_lengths = [len(e.ids) + 5 for e in tokenizer.encode_batch(sources)]
    target_lengths = [len(e.ids) + 1 for e in tokenizer.encode_batch(targets)]
    target_mean = statistics.mean(target_lengths)
    print(
        f"{len(sources)} methods of {args.split}; source tokens median "
        f"{statistics.median(source_lengths):.0f}, mean {statistics.mean(source_lengths):.0f}; "
        f"target mean {target_mean:.1f}"
    )
    print("cap    fits  tokens/example  examples/s  vs no cap")
    full = statistics.mean(source_lengths) + target_mean
    for cap in CAPS:
        capped = [min(n, cap) if cap else n for n in source_lengths]
        per_example = statistics.mean(capped) + target_mean
        fits = 100 * sum(n <= (cap or n) for n in source_lengths) / len(source_lengths)
        print(
            f"{cap or 'none':>4} {fits:6.1f}% {per_example:15.1f} "
            f"{args.tokens_per_s / per_example:11.1f} {full / per_example:9.2f}x"
        )


if __name__ == "__main__":
    main()
