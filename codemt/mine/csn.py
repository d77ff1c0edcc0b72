"""CodeSearchNet-schema jsonl: our corpus written so other tools can read it.

The fields are CodeSearchNet's (`repo, path, func_name, original_string, language, code,
code_tokens, docstring, docstring_tokens, partition, ...`). As in CodeSearchNet,
`docstring_tokens` are the tokens of the docstring's first paragraph and `code_tokens`
those of the code without its docstring. `codemt mine` reads such files back as a source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from codemt.corpus import SPLITS, iter_records
from codemt.source.docstrings import summary_of
from codemt.source.extract import method_source

_CODE_TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|\S")
_TEXT_TOKEN = re.compile(r"\w+|[^\w\s]")


def to_codesearchnet(record: dict) -> dict:
    """One corpus record as a CodeSearchNet row."""
    code = method_source(record, with_docstring=True, raw=True)
    return {
        "repo": record["repo"],
        "path": record["path"],
        "func_name": record["name"],
        "original_string": code,
        "language": "python",
        "code": code,
        "code_tokens": _CODE_TOKEN.findall(method_source(record, with_docstring=False)),
        "docstring": record["docstring"],
        "docstring_tokens": _TEXT_TOKEN.findall(summary_of(record["docstring"])),
        "partition": record["split"],
        "lineno": record["lineno"],
        "docstring_style": record["docstring_style"],
    }


def write_codesearchnet(corpus: Path) -> dict[str, int]:
    """Write `corpus/jsonl/{split}.jsonl` for every split; returns rows written per split."""
    out_dir = Path(corpus) / "jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in SPLITS:
        path = out_dir / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        count = 0
        with tmp.open("w", encoding="utf-8") as handle:
            for record in iter_records(corpus, split):
                handle.write(json.dumps(to_codesearchnet(record), ensure_ascii=False) + "\n")
                count += 1
        tmp.replace(path)
        written[split] = count
    return written
