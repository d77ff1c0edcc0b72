"""One file or one jsonl row -> method records with their de-duplication keys: a worker's job.

Reading, repairing, parsing and extracting methods are `codemt.source`'s; this adds the keys
`codemt.mine.dedup` computes and the `docstring_task` flag, and tallies what it skipped,
with where and why.
"""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from codemt.mine.dedup import band_keys_batch, code_tokens, exact_key, local_names
from codemt.mine.jsonl import BadRow, read_row
from codemt.mine.settings import MineSettings
from codemt.source import reading
from codemt.source.extract import extract_methods

MAX_LISTED_SKIPS = 100  # per source in the manifest; the counts hold every skip


@dataclass
class Tally:
    """What mining part of a source counted, and the first skips it met, with where and why."""

    counts: Counter = field(default_factory=Counter)
    skipped: list[dict] = field(default_factory=list)  # {"reason": count key, "message": ...}

    def skip(self, key: str, message: str) -> None:
        """Count a unit left out under `key` (e.g. "files_skipped:syntax_error") and list it."""
        self.counts[key] += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"reason": key, "message": reading.printable(message)})

    def add(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.skipped.extend(other.skipped[: MAX_LISTED_SKIPS - len(self.skipped)])


def keyed(pairs: list[tuple[ast.AST, dict]], settings: MineSettings, counts: Counter) -> list[dict]:
    """Add the de-duplication keys and the docstring-task flag to the records of one file."""
    records = [record for _, record in pairs]
    tokens = [
        code_tokens(r["signature"], r["body"], local_names(node, r["body"])) for node, r in pairs
    ]
    bands = (
        band_keys_batch(tokens, settings.dedup) if settings.dedup.near else [None] * len(records)
    )
    for record, keys in zip(records, bands, strict=True):
        record["exact_key"] = exact_key(record["signature"], record["body"])
        record["band_keys"] = keys
        reason = settings.filters.exclusion(record)
        record["docstring_task"] = reason is None
        if reason and reason != "no_docstring":
            counts[f"docstring_task_excluded:{reason}"] += 1
    return records


def _lone_surrogate_field(record: dict) -> str | None:
    """The first text field of a record that holds a lone surrogate (as a docstring written
    with a "\\ud800" escape does), which UTF-8 and so Parquet cannot store; None if none."""
    for name, value in record.items():
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and reading.holds_lone_surrogate(text) for text in texts):
            return name
    return None


def _storable(
    pairs: Iterable[tuple[ast.AST, dict]], path: Path, tally: Tally
) -> list[tuple[ast.AST, dict]]:
    """The methods of a file that can be stored; the others are skipped and counted."""
    kept = []
    for node, record in pairs:
        field = _lone_surrogate_field(record)
        if field is None:
            kept.append((node, record))
        else:
            tally.skip(
                "methods_skipped:lone_surrogate",
                f"{path}:{record['lineno']}: {record['name']}: its {field} holds a lone "
                "surrogate, which UTF-8 cannot store",
            )
    return kept


def mine_file(
    path: Path, root: Path, repo: str, settings: MineSettings, tally: Tally
) -> list[dict]:
    # Names of files and folders that are not UTF-8 are stored backslash-escaped.
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    relative, repo = reading.printable(relative), reading.printable(repo)
    counts = tally.counts
    try:
        data = path.read_bytes()
        text = reading.decode_source(data, max_bytes=settings.max_file_bytes)
        tree, _, repair = reading.parse_with_repairs(
            text, repair=settings.repair, max_tokens=settings.max_parse_tokens
        )
        if repair:
            counts[f"files:{repair}"] += 1
        methods = _storable(extract_methods(tree, repo=repo, path=relative), path, tally)
        records = keyed(methods, settings, counts)
    except reading.SkipFile as skip:
        tally.skip(f"files_skipped:{skip.reason}", f"{path}: {skip}")
        return []
    except OSError as error:
        tally.skip(f"files_skipped:{reading.UNREADABLE}", f"{path}: {error.strerror or error}")
        return []
    except RecursionError:
        tally.skip(f"files_skipped:{reading.TOO_DEEP}", f"{path}: nesting too deep")
        return []
    except MemoryError:
        tally.skip(f"files_skipped:{reading.OUT_OF_MEMORY}", f"{path}: ran out of memory")
        return []
    counts["files_parsed"] += 1
    counts["methods"] += len(records)
    return records


def mine_jsonl_row(line: str, where: str, settings: MineSettings, tally: Tally) -> list[dict]:
    """One CodeSearchNet/CodeXGLUE row: its `original_string` (or `code`) is one function.

    `where` is the row's file and line number ("train.jsonl:12"), for the skip messages.
    """
    counts = tally.counts
    try:
        row, code, lineno = read_row(line)
        text = textwrap.dedent(code.replace("\r\n", "\n"))
        tree, _, repair = reading.parse_with_repairs(
            text, repair=settings.repair, max_tokens=settings.max_parse_tokens
        )
        if repair:
            counts[f"files:{repair}"] += 1
        repo, path = (reading.printable(str(row.get(key, ""))) for key in ("repo", "path"))
        found = next(extract_methods(tree, repo=repo, path=path), None)
    except (BadRow, reading.SkipFile) as skip:
        tally.skip(f"rows_skipped:{skip.reason}", f"{where}: {skip}")
        return []
    except (RecursionError, MemoryError):
        tally.skip(f"rows_skipped:{reading.TOO_DEEP}", f"{where}: nesting too deep")
        return []
    if found is None:
        tally.skip("rows_skipped:no_function", f"{where}: its code holds no function")
        return []
    node, record = found
    func_name = reading.printable(str(row.get("func_name") or record["name"]))
    record["name"] = func_name
    if "." in func_name and not record["class_name"]:
        record["class_name"] = func_name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    record["lineno"] = lineno or record["lineno"]
    field = _lone_surrogate_field(record)
    if field is not None:
        message = f"{where}: its {field} holds a lone surrogate, which UTF-8 cannot store"
        tally.skip("methods_skipped:lone_surrogate", message)
        return []
    counts["rows_parsed"] += 1
    counts["methods"] += 1
    return keyed([(node, record)], settings, counts)
