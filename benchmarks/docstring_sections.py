"""How many of a corpus's structured docstrings each reader keeps as written.

For google, numpy and rest docstrings of a corpus split: the share that
`docstring_parser` gives back unchanged after `compose(parse(d))` (an update through it
would reflow the others), and the share `codemt.source.sections.read_docstring` reads (it keeps
every line by construction; the others it leaves alone).

    pip install docstring_parser
    python benchmarks/docstring_sections.py --corpus data/corpus --split test --n 1000
"""

from __future__ import annotations

import argparse
import collections
import inspect

from codemt.corpus import iter_records
from codemt.source.docstrings import GOOGLE, NUMPY, REST, detect_style
from codemt.source.sections import Unreadable, read_docstring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=1000, help="docstrings per style")
    args = parser.parse_args()
    try:
        import docstring_parser as dp
    except ImportError:
        raise SystemExit(
            "this measurement needs docstring_parser: pip install docstring_parser"
        ) from None
    styles = {
        GOOGLE: dp.DocstringStyle.GOOGLE,
        NUMPY: dp.DocstringStyle.NUMPYDOC,
        REST: dp.DocstringStyle.REST,
    }
    seen, unchanged, read = collections.Counter(), collections.Counter(), collections.Counter()
    for record in iter_records(args.corpus, args.split, ["docstring"]):
        text = inspect.cleandoc(record["docstring"] or "")
        style = detect_style(text)
        if style not in styles or seen[style] >= args.n:
            continue
        seen[style] += 1
        try:
            composed = dp.compose(dp.parse(text, styles[style]), styles[style])
            unchanged[style] += composed.strip() == text.strip()
        except Exception:  # noqa: BLE001 - a parser failure counts as changed
            pass
        literal = '"""' + text.replace("\n", "\n    ") + '\n    """'
        try:
            read_docstring(literal, style)
            read[style] += 1
        except Unreadable:
            pass
        if all(seen[s] >= args.n for s in styles):
            break
    print("| style | docstrings | docstring_parser unchanged | codemt reads |")
    print("|---|---|---|---|")
    for style in styles:
        n = max(seen[style], 1)
        print(
            f"| {style} | {seen[style]} | {100 * unchanged[style] / n:.1f}% "
            f"| {100 * read[style] / n:.1f}% |"
        )


if __name__ == "__main__":
    main()
