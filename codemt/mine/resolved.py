"""What reading a source gives the miner, and the pieces every reader shares.

    Repository     a named set of Python files under a root (record paths are relative to it)
    JsonlSource    a jsonl file whose rows the miner reads itself
    SourceFailure  a spec that could not be read: reported and skipped

Files left out while discovering a repository are counted, not dropped silently:
`Repository.skipped` holds sorted `(reason, count)` pairs, a tuple so that the dataclass
stays frozen and hashable (`dict(repo.skipped)` gives a mapping). The reasons are
"too_large", "symlink_outside" (a link leading out of the root), "missing" (a file listed in
a RECORD or a broken link), "not_regular" (a fifo or device named like a .py file),
"unreadable" (a file whose status cannot be read), "unsafe_member" (an archive member that
is a link or device or would land outside the extraction folder), "damaged_member" (a zip
member that cannot be decompressed) and "outside_site" (a RECORD entry outside
site-packages, as with editable installs).

A part larger than a file that cannot be read is left out alone, never the whole source:
`Repository.left_out` holds one `Skip` for each, with where and why. The reasons are
"unreadable_folder" (a folder that cannot be listed) and "damaged_archive" (an archive
damaged part way: the members before the damage are kept).

Shared by the readers: their `Limits`, `sorted_counts` (the form of `Repository.skipped`),
PEP 503 distribution names, and `move_into_place` for a finished cache entry.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Repository:
    """A unit of mining: a named repository and the Python files in it."""

    name: str  # stable id hashed for the split, e.g. "github.com/psf/requests", "pypi/numpy"
    source: str  # the spec as the user gave it (after list-file expansion)
    root: Path  # record paths are made relative to this
    files: tuple[Path, ...]  # absolute paths of the .py/.pyw files, sorted
    skipped: tuple[tuple[str, int], ...] = ()  # (reason, count) of files left out, sorted
    left_out: tuple[Skip, ...] = ()  # folders or archive ends that could not be read


@dataclass(frozen=True)
class Skip:
    """A part of a source that could not be read and was left out; the rest is mined."""

    reason: str  # "unreadable_folder", "damaged_archive" ("damaged_file": a cut jsonl file)
    message: str  # one line: where, what went wrong, what was kept


@dataclass(frozen=True)
class JsonlSource:
    """A CodeSearchNet/CodeXGLUE jsonl file (.jsonl, .jsonl.gz); the miner reads its rows itself."""

    source: str
    path: Path


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read: reported in the mining report and skipped."""

    source: str
    reason: str  # short key counted in the report: "not_found", "clone_failed", "bad_archive", ...
    message: str  # one line a user understands: what went wrong and what to do


Resolved = Repository | JsonlSource | SourceFailure


@dataclass(frozen=True)
class Limits:
    """What a reader may take in: file and archive sizes, clone time, distributions."""

    max_file_bytes: int
    clone_timeout: float
    max_archive_bytes: int
    max_archive_members: int
    exclude_distributions: frozenset[str]  # normalised names


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name: runs of -_. become '-', lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sorted_counts(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    """Counts of skipped files in the form of `Repository.skipped`: sorted, no zeros."""
    return tuple(sorted((reason, count) for reason, count in counts.items() if count))


def move_into_place(temp_dir: Path, final_dir: Path) -> None:
    """Rename a finished temp folder to `final_dir`; if another run got there first, keep its."""
    try:
        temp_dir.rename(final_dir)
    except OSError:
        if not final_dir.is_dir():
            raise
        shutil.rmtree(temp_dir)
