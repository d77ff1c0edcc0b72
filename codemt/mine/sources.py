"""Source specs -> what the miner reads: the input side of `codemt mine`.

A spec is what a user passes to `codemt mine`: a local directory or .py file, a git URL or
bare repository, an archive (sdist, wheel, tarball, zip), a CodeSearchNet .jsonl(.gz) file,
`python:stdlib`, `python:site-packages`, or a list file naming more specs. `expand_sources`
flattens list files; `resolve` tells which kind a spec is and hands it to its reader
(`folders`, `git`, `archives`, `interpreter`), which gives what `codemt.mine.resolved`
describes: repositories, a jsonl file, or a failure saying why a spec cannot be read.

Mined code is data: nothing here imports, runs or installs it. Git clones run with hooks
off and never prompt; archives are extracted by hand, Python files only. Clones and
extracted archives are kept under the cache folder and reused across runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from codemt.mine.archives import archive_repository, archive_suffix
from codemt.mine.folders import directory_repository, single_file
from codemt.mine.git import (
    GIT_SCHEMES,
    SCP_LIKE_URL,
    git_repository,
    is_bare_repository,
    local_directory_name,
    without_credentials,
)
from codemt.mine.interpreter import INTERPRETER_SOURCES
from codemt.mine.resolved import (
    JsonlSource,
    Limits,
    Repository,
    Resolved,
    SourceFailure,
    normalise,
    sorted_counts,
)
from codemt.source.files import PYTHON_SUFFIXES

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")

NOT_FOUND_HINT = (
    "no such file, directory or known source; expected a directory, git URL, archive, "
    "list file, .jsonl, python:stdlib or python:site-packages"
)

# owner/name, as long as GitHub allows (39 and 100 characters)
_GITHUB_SHORTHAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")


def expand_sources(specs: Sequence[str]) -> list[str]:
    """Replace list files by the specs they name, keeping order and dropping exact duplicates.

    A list file is an existing file that is not .py/.pyw, .jsonl(.gz) or an archive. It holds
    one spec per line; blank lines and lines starting with '#' are skipped. Relative paths are
    resolved against the list file's folder, an `owner/name` line that is not an existing path
    means https://github.com/owner/name, and list files may include other list files. Other
    specs are kept as given.

    Raises ValueError for a list file that is not UTF-8 text or that includes itself.
    """
    return list(dict.fromkeys(item for spec in specs for item in _expand(spec, ())))


def resolve(
    spec: str,
    cache_dir: Path,
    *,
    max_file_bytes: int = 1_000_000,
    clone_timeout: float = 600.0,
    max_archive_bytes: int = 2 * 1024**3,
    max_archive_members: int = 200_000,
    exclude_distributions: Sequence[str] = ("codemt",),
) -> Iterator[Resolved]:
    """Turn one spec into the repositories (or jsonl file) it names; never raises for bad input.

    Git clones and extracted archives are kept under `cache_dir` and reused by later calls.
    `python:stdlib` yields one Repository per top-level module or package and
    `python:site-packages` one per installed distribution (except `exclude_distributions`);
    every other spec yields exactly one item. A spec that cannot be read yields a
    SourceFailure saying why. Files over `max_file_bytes` are skipped and counted;
    `max_archive_bytes` (extracted .py bytes) and `max_archive_members` guard against
    archive bombs.
    """
    limits = Limits(
        max_file_bytes=max_file_bytes,
        clone_timeout=clone_timeout,
        max_archive_bytes=max_archive_bytes,
        max_archive_members=max_archive_members,
        exclude_distributions=frozenset(normalise(name) for name in exclude_distributions),
    )
    try:
        yield from _resolve(spec, Path(cache_dir), limits)
    except OSError as err:
        yield SourceFailure(
            spec, "unreadable", f"{spec}: {err}; check permissions and free disk space"
        )


def _resolve(spec: str, cache_dir: Path, limits: Limits) -> Iterator[Resolved]:
    text = spec.strip()
    if text.startswith("python:"):
        interpreter_source = INTERPRETER_SOURCES.get(text)
        if interpreter_source is None:
            yield SourceFailure(
                spec, "unsupported", f"{spec}: expected python:stdlib or python:site-packages"
            )
        else:
            yield from interpreter_source(spec, limits)
        return
    if "://" in text:
        yield _url(spec, text, cache_dir, limits)
        return
    if SCP_LIKE_URL.match(text):
        yield git_repository(spec, text, cache_dir, limits)
        return
    path = Path(text).expanduser()
    if _is_dir(path):
        if is_bare_repository(path):
            yield git_repository(spec, path.resolve().as_uri(), cache_dir, limits)
        else:
            root = path.resolve()
            yield directory_repository(local_directory_name(root), spec, root, limits)
    elif _is_file(path):
        yield from _file(spec, path, cache_dir, limits)
    elif text.endswith(".git"):
        yield git_repository(spec, text, cache_dir, limits)
    else:
        yield SourceFailure(spec, "not_found", f"{spec}: {NOT_FOUND_HINT}")


def _file(spec: str, path: Path, cache_dir: Path, limits: Limits) -> Iterator[Resolved]:
    filename = path.name.lower()
    suffix = archive_suffix(filename)
    if filename.endswith(PYTHON_SUFFIXES):
        file = path.resolve()
        files, skipped = single_file(file, file.parent, limits.max_file_bytes)
        name = f"{file.parent.name}/{file.name}"
        yield Repository(name, spec, file.parent, tuple(files), sorted_counts(skipped))
    elif filename.endswith(JSONL_SUFFIXES):
        yield JsonlSource(spec, path.resolve())
    elif suffix is not None:
        yield archive_repository(spec, path, suffix, cache_dir, limits)
    else:
        try:
            specs = expand_sources([spec])
        except ValueError as err:
            yield SourceFailure(spec, "bad_list", str(err))
            return
        for item in specs:
            yield from _resolve(item, cache_dir, limits)


def _url(spec: str, url: str, cache_dir: Path, limits: Limits) -> Resolved:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and _has_file_suffix(parts.path):
        return SourceFailure(
            spec,
            "unsupported",
            f"{without_credentials(url)}: downloading files is not supported; "
            "download it and pass the local path",
        )
    if scheme not in GIT_SCHEMES:
        return SourceFailure(
            spec,
            "unsupported",
            f"{spec}: unsupported URL scheme {scheme!r}; expected a git URL "
            "(https, ssh, git or file)",
        )
    return git_repository(spec, url, cache_dir, limits)


# --- list files ---------------------------------------------------------------------------


def _expand(spec: str, including: tuple[Path, ...]) -> Iterator[str]:
    """`spec` itself, or the specs of the list file it names; `including` are the open lists."""
    path = Path(spec).expanduser()
    if not _is_list_file(path):
        yield spec
        return
    list_file = path.resolve()
    including = (*including, list_file)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(
            f"{spec}: not a UTF-8 list of sources, nor a directory, .py file, archive or "
            ".jsonl file; pass one of those"
        ) from None
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        item = _spec_from_line(line, list_file.parent)
        target = Path(item).expanduser()
        if _is_list_file(target) and target.resolve() in including:
            raise ValueError(
                f"{list_file}:{lineno}: {line!r} includes {target.resolve()}, which is "
                "already being expanded (a cycle of list files); remove this line"
            )
        yield from _expand(item, including)


def _spec_from_line(line: str, folder: Path) -> str:
    if "://" in line or SCP_LIKE_URL.match(line) or line.startswith("python:"):
        return line
    path = Path(line).expanduser()
    if path.is_absolute():
        return str(path)
    local = folder / path
    if _GITHUB_SHORTHAND.match(line) and not _has_file_suffix(line) and not _exists(local):
        return f"https://github.com/{line}"
    return os.path.normpath(local)


def _is_list_file(path: Path) -> bool:
    return _is_file(path) and not _has_file_suffix(path.name)


def _is_file(path: Path) -> bool:
    """`path.is_file()`, False for what cannot name a file at all (a name too long, say: a
    line of a text file read as a list of sources)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    """`path.is_dir()`, False for what cannot name a folder at all."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    """`path.exists()`, False for what cannot name a file at all."""
    try:
        return path.exists()
    except OSError:
        return False


def _has_file_suffix(name: str) -> bool:
    """Whether `name` ends like a file `resolve` reads directly (not a list file)."""
    lowered = name.lower()
    return lowered.endswith(PYTHON_SUFFIXES + JSONL_SUFFIXES) or archive_suffix(lowered) is not None
