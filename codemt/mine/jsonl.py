"""CodeSearchNet/CodeXGLUE jsonl files as a source: their lines, and each row's code.

A file cut part way (a broken download) keeps the rows before the damage. A row is a JSON
object whose `original_string` (or `code`) holds one function, with an optional `lineno`.
`codemt.mine.csn` writes a corpus back in this schema.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from codemt.mine.resolved import Skip

MAX_LINENO = 2**31 - 1  # line numbers are stored as int32


def read_jsonl(path: Path) -> tuple[list[str], Skip | None]:
    """The lines of a jsonl(.gz) file and, if it is damaged part way (a cut download), the
    skip of the rest; raises OSError, EOFError or zlib.error when not one line can be read."""
    opener = gzip.open if path.name.endswith(".gz") else open
    lines: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                lines.append(line)
    except (OSError, EOFError, zlib.error) as error:
        if not lines:
            raise
        message = (
            f"{path}: damaged after line {len(lines)} ({error}); the rows before are mined, "
            "the rest is left out"
        )
        return lines, Skip("damaged_file", message)
    return lines, None


class BadRow(Exception):
    """A jsonl row that cannot be mined; `reason` is the counted key, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def read_row(line: str) -> tuple[dict, str, int | None]:
    """A jsonl row, its code and its `lineno` (None when it has none); raises BadRow."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadRow("bad_row", f"not JSON ({error})") from None
    if not isinstance(row, dict):
        raise BadRow("bad_row", "not a JSON object")
    code = row.get("original_string") or row.get("code")
    if not isinstance(code, str):
        raise BadRow("bad_row", "no code string in original_string or code")
    lineno = row.get("lineno")
    return row, code, None if lineno is None else _line_number(lineno)


def _line_number(value: object) -> int:
    """A row's `lineno`, which must be a whole number from 1 to MAX_LINENO (9.0 is 9)."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= MAX_LINENO:
        return number
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise BadRow(
        "bad_lineno",
        f"lineno {shown} is not a line number (a whole number from 1 to {MAX_LINENO}); "
        "fix it or leave it out",
    )
