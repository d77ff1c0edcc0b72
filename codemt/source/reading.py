"""Reading Python files as the paper did: decode by PEP 263, parse, repair what does not parse.

A file that does not parse as Python 3 gets two repairs, in the paper's order: whitespace
fixes (tabs expanded to 8 columns, as Python 2 read them; stray form feeds and NUL-free
line endings normalised), then a Python 2 to 3 conversion with `fissix`, the maintained
fork of lib2to3 (which leaves the standard library in Python 3.13). Whatever still fails
raises `SkipFile` with a reason key that the mining report counts.

Parsing costs memory and time in proportion to a file's tokens, so a file is parsed only up
to a number of tokens, counted cheaply first (a file of 30 MB is refused in a fraction of a
second instead of a parse of minutes and gigabytes). Measured with Python 3.11 on a 3 MB file
of 892,000 tokens that does not parse: `ast.parse` takes 3.5 s and peaks at 820 MB (about
0.9 KB a token; half of that for a file that parses). The Python 2 conversion is slower
still (5.6 s and 107 MB for 300,000 tokens, 25 s for 892,000), so it is tried on smaller
files only.
"""

from __future__ import annotations

import ast
import gc
import itertools
import re
import threading
import tokenize
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

# Reasons a file is skipped; the mining report counts each.
BINARY = "binary"
TOO_LARGE = "too_large"
BAD_ENCODING = "bad_encoding"
SYNTAX_ERROR = "syntax_error"
TOO_DEEP = "too_deep"
OUT_OF_MEMORY = "out_of_memory"
UNREADABLE = "unreadable"
TOO_MANY_TOKENS = "too_many_tokens"  # over the parse limit
TOO_LARGE_TO_REPAIR = "too_large_to_repair"  # does not parse, too large for the conversion

MAX_PARSE_TOKENS = 1_000_000  # a parse peaks near 0.9 GB and 4 s at this size
MAX_REPAIR_TOKENS = 300_000  # the Python 2 conversion takes about 6 s and 110 MB here

# Repairs that made a file parse; counted too.
REPAIRED_WHITESPACE = "repaired_whitespace"
REPAIRED_PY2 = "repaired_py2"


def printable(text: str) -> str:
    r"""`text` with what UTF-8 cannot hold written as backslash escapes, for names and messages.

    A file name whose bytes are not UTF-8 reaches Python with surrogate escapes
    (b"caf\xe9.py" becomes "caf\udce9.py"); its bytes are written back as "caf\\xe9.py".
    Other lone surrogates, as a JSON "\ud800" gives, become "\\ud800". Other text is
    returned as it is.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that escapes no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def holds_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a lone surrogate, which UTF-8 (and so Parquet) cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class SkipFile(Exception):
    """A file that cannot be mined; `reason` is the counted key, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


_LINE_END = re.compile(rb"\r\n|\r|\n")


def source_encoding(data: bytes) -> str:
    """The encoding of a Python file's bytes, by its BOM or PEP 263 coding cookie.

    `tokenize.detect_encoding` reads the cookie from lines it ends at "\n" only; Python
    also ends them at a lone "\r" (old Mac files), where the cookie went unseen and the
    file was refused. Raises SyntaxError as tokenize does (an unknown encoding, say).
    """
    lines = iter([line + b"\n" for line in _LINE_END.split(data, maxsplit=2)[:2]])
    return tokenize.detect_encoding(lambda: next(lines, b""))[0]


def decode_source(data: bytes, *, max_bytes: int = 1_000_000) -> str:
    """Decode the bytes of a Python file, honouring its PEP 263 coding cookie and BOM.

    Line endings are normalised to "\\n", as the Python parser itself does.
    """
    if len(data) > max_bytes:
        raise SkipFile(TOO_LARGE, f"{len(data)} bytes, over the limit of {max_bytes}")
    if b"\x00" in data[:8192]:
        raise SkipFile(BINARY, "contains NUL bytes: not a text file")
    try:
        text = data.decode(source_encoding(data))
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        raise SkipFile(BAD_ENCODING, f"cannot decode: {exc}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise SkipFile(BINARY, "contains NUL characters: not a text file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


_LEADING_WS = re.compile(r"^[ \t\f]+", re.MULTILINE)


def fix_whitespace(text: str) -> str:
    """Expand tabs in indentation to 8 columns and drop form feeds there (Python 2 semantics)."""
    return _LEADING_WS.sub(lambda m: m.group(0).replace("\f", "").expandtabs(8), text)


@lru_cache(maxsize=1)
def _py2to3_tool():
    from fissix.refactor import RefactoringTool, get_fixers_from_package

    return RefactoringTool(get_fixers_from_package("fissix.fixes"))


def convert_py2(text: str) -> str:
    """Convert Python 2 source to Python 3 with fissix's standard fixers."""
    from fissix.pgen2.parse import ParseError
    from fissix.pgen2.tokenize import TokenError

    try:
        tree = _py2to3_tool().refactor_string(text if text.endswith("\n") else text + "\n", "<py2>")
    # KeyError: a character fissix reads as an operator its grammar lacks ("x = 2²")
    except (ParseError, TokenError, IndentationError, SyntaxError, ValueError, KeyError) as exc:
        raise SyntaxError(f"Python 2 conversion failed: {exc}") from None
    return str(tree)


# Allocations of container objects between two collections of the youngest generation
# while many files are parsed (Python's default: 700).
RARE_GC_THRESHOLD = 100_000


@contextmanager
def rare_collections() -> Iterator[None]:
    """Python's cyclic garbage collector run 140 times less often, for the time of a block
    that parses many files.

    Parsing makes syntax trees by the million (short-lived) beside what is kept of them
    (long-lived: a miner's records of the sources not yet staged, a project memory's
    functions); each collection of the oldest generation walks all that is kept, and the
    default threshold starts collections so often that the collector took longer than
    extracting the methods. Trees and records hold no reference cycles (reference counting
    frees them as they go; the odd cycle, a Python 2 file's converted tree with its parent
    links say, is collected later), so collecting rarely keeps little alive that would
    otherwise be freed. A threshold already higher, or 0 (collection off), is left as it is.
    """
    global _rare_depth, _usual_threshold
    with _rare_lock:  # blocks may nest, or run in threads side by side: the first one in
        if _rare_depth == 0:  # saves the setting, the last one out gives it back
            _usual_threshold = collect_rarely()
        _rare_depth += 1
    try:
        yield
    finally:
        with _rare_lock:
            _rare_depth -= 1
            if _rare_depth == 0:
                gc.set_threshold(*_usual_threshold)


def collect_rarely() -> tuple[int, int, int]:
    """Raise the collector's threshold to `RARE_GC_THRESHOLD` (a higher one, or 0 for
    collection off, stays); returns the setting before. For a process that only parses,
    for its whole life; elsewhere `rare_collections` gives the setting back."""
    threshold = gc.get_threshold()
    if 0 < threshold[0] < RARE_GC_THRESHOLD:
        gc.set_threshold(RARE_GC_THRESHOLD, *threshold[1:])
    return threshold


_rare_lock = threading.Lock()
_rare_depth = 0
_usual_threshold = gc.get_threshold()


def _parse(text: str) -> ast.Module:
    try:
        return ast.parse(text)
    except RecursionError:
        raise SkipFile(TOO_DEEP, "nesting too deep for the parser") from None
    except MemoryError:
        raise SkipFile(OUT_OF_MEMORY, "ran out of memory while parsing") from None
    except ValueError as exc:  # e.g. NUL characters that slipped through
        raise SkipFile(BINARY, str(exc)) from None


# Words, punctuation and line ends: at least as many as Python's tokens, but for blank
# lines, and cheap to count.
_TOKEN = re.compile(r"\w+|[^\w\s]|\n")


def has_more_tokens(text: str, limit: int) -> bool:
    """Whether `text` holds more than `limit` tokens, counted by `_TOKEN` up to the limit,
    so that the time taken is bounded by the limit, not by the size of the text."""
    if len(text) <= limit:  # never more tokens than characters
        return False
    return next(itertools.islice(_TOKEN.finditer(text), limit, None), None) is not None


def parse_with_repairs(
    text: str,
    *,
    repair: bool = True,
    max_tokens: int = MAX_PARSE_TOKENS,
    max_repair_tokens: int = MAX_REPAIR_TOKENS,
) -> tuple[ast.Module, str, str | None]:
    """Parse source text, repairing it if needed.

    Returns `(tree, text_parsed, repair_applied)` where `repair_applied` is None,
    `REPAIRED_WHITESPACE` or `REPAIRED_PY2`. Raises `SkipFile(SYNTAX_ERROR, ...)` with the
    first error's line and message when no repair helps. Guards: a text of more than
    `max_tokens` tokens is not parsed (`TOO_MANY_TOKENS`), and one of more than
    `max_repair_tokens` that does not parse is not converted from Python 2
    (`TOO_LARGE_TO_REPAIR`).
    """
    if has_more_tokens(text, max_tokens):
        raise SkipFile(
            TOO_MANY_TOKENS,
            f"more than {max_tokens} tokens, over the parse limit (a parse costs about 1 KB "
            "of memory a token); raise the limit to read it",
        )
    try:
        return _parse(text), text, None
    except SyntaxError as exc:
        first_error = exc
    if repair:
        fixed = fix_whitespace(text)
        if fixed != text:
            try:
                return _parse(fixed), fixed, REPAIRED_WHITESPACE
            except SyntaxError:
                pass
        if has_more_tokens(fixed, max_repair_tokens):
            raise SkipFile(
                TOO_LARGE_TO_REPAIR,
                f"line {first_error.lineno}: {first_error.msg}; with more than "
                f"{max_repair_tokens} tokens it is too large to try the Python 2 conversion",
            )
        try:
            converted = convert_py2(fixed)
            return _parse(converted), converted, REPAIRED_PY2
        except RecursionError:
            raise SkipFile(TOO_DEEP, "nesting too deep for the Python 2 converter") from None
        except SyntaxError:
            pass
    raise SkipFile(SYNTAX_ERROR, f"line {first_error.lineno}: {first_error.msg}")
