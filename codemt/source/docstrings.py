"""Docstring cleaning (as in the paper) and style detection.

Cleaning: indentation removed as `inspect.cleandoc` does, Unicode normalised (NFKC),
URLs, e-mail addresses, file paths and commit hashes replaced by placeholder tokens,
and what is still not ASCII removed. The raw docstring is kept beside the clean one.
"""

from __future__ import annotations

import inspect
import re
import unicodedata

URL_TOKEN = "<URL>"
EMAIL_TOKEN = "<EMAIL>"
PATH_TOKEN = "<PATH>"
HASH_TOKEN = "<HASH>"

_URL = re.compile(r"\b(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)[^\s<>()\"'`]+[^\s<>()\"'`.,;:!?]")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# A path needs a root ("/", "~/", "./", "../" or a drive) and at least two components,
# so prose such as "and/or" or "input/output" stays as it is.
_POSIX_PATH = re.compile(r"(?<![\w/.<>~-])(?:~|\.{1,2})?/(?:[\w.+-]+/)+[\w.+-]*")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\{1,2}(?:[\w.+-]+\\{1,2})*[\w.+-]*")
# Hex strings of 7 to 40 characters with both a digit and a letter: commit hashes.
_HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def clean_docstring(raw: str) -> str:
    """Clean a docstring as the paper did; returns "" for a missing or blank docstring."""
    if not raw or not raw.strip():
        return ""
    text = inspect.cleandoc(raw)
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(URL_TOKEN, text)
    text = _EMAIL.sub(EMAIL_TOKEN, text)
    text = _WINDOWS_PATH.sub(PATH_TOKEN, text)
    text = _POSIX_PATH.sub(PATH_TOKEN, text)
    text = _HASH.sub(HASH_TOKEN, text)
    text = text.encode("ascii", "ignore").decode("ascii")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def summary_of(docstring: str) -> str:
    """The first paragraph of a docstring on one line (what CodeXGLUE uses as reference)."""
    paragraph = docstring.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def prose_summary(docstring: str) -> str:
    """`summary_of`, or "" where the docstring starts with its fields or sections
    (`:param x: ...`, `Args:`): a list of parameters is no summary to offer or write."""
    summary = summary_of(docstring)
    first = docstring.strip().split("\n", 1)[0].strip()
    if _REST_FIELD.match(first) or re.fullmatch(rf"(?:{_SECTION_NAMES}):?", first):
        return ""
    return summary


SUMMARY, GOOGLE, NUMPY, REST, OTHER = "summary", "google", "numpy", "rest", "other"
STYLES = (SUMMARY, GOOGLE, NUMPY, REST, OTHER)

_SECTION_NAMES = (
    "Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Exceptions|Attributes|"
    "Examples?|Notes?|Warnings?|See Also|References|Keyword Args|Keyword Arguments|"
    "Other Parameters|Methods|Todo"
)
_NUMPY_SECTION = re.compile(rf"^\s*(?:{_SECTION_NAMES})\s*\n\s*-{{3,}}\s*$", re.MULTILINE)
_GOOGLE_SECTION = re.compile(rf"^\s*(?:{_SECTION_NAMES}):\s*\n\s+\S", re.MULTILINE)
_REST_FIELD = re.compile(
    r"^\s*(?::(?:param|parameter|arg|argument|key|keyword|type|returns?|rtype|raises?|except|"
    r"exception|var|ivar|cvar|yields?)\b[^:\n]*:|@(?:param|type|return|rtype|raise)\b)",
    re.MULTILINE,
)


def detect_style(docstring: str) -> str:
    """Classify a docstring as summary, google, numpy, rest or other ("" when empty).

    summary: one paragraph and no sections; google: `Args:`-style headed sections;
    numpy: section names underlined with dashes; rest: Sphinx/epytext field lists;
    other: several paragraphs of free text.
    """
    if not docstring.strip():
        return ""
    if _NUMPY_SECTION.search(docstring):
        return NUMPY
    if _GOOGLE_SECTION.search(docstring):
        return GOOGLE
    if _REST_FIELD.search(docstring):
        return REST
    if "\n\n" not in docstring.strip():
        return SUMMARY
    return OTHER
