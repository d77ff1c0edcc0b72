"""Source specs -> repositories of Python files: the input side of `codemt mine`.

A spec is what a user passes to `codemt mine`: a local directory or .py file, a git URL or
bare repository, an archive (sdist, wheel, tarball, zip), a CodeSearchNet .jsonl(.gz) file,
`python:stdlib`, `python:site-packages`, or a list file naming more specs. `expand_sources`
flattens list files; `resolve` turns one spec into what the miner reads:

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

Mined code is data: nothing here imports, runs or installs it. Git clones run with hooks
off and never prompt; archives are extracted by hand, Python files only.

Cache layout (reused across runs; each entry is built in a temp folder and renamed into place):

    CACHE/git/<name>-<url hash>/            shallow clone, complete once .git/codemt-complete exists
    CACHE/archives/<sha256[:16]>/           extracted .py/.pyw members + .codemt-extracted.json
                                            (root folder, skipped counts and damage, for reuse)
"""

from __future__ import annotations

import errno
import hashlib
import json
import lzma
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

PYTHON_SUFFIXES = (".py", ".pyw")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
# Hidden folders (.git, .tox, .eggs, ...) are skipped too, as are virtualenvs and *.egg-info
# (`is_skipped_folder`).
SKIPPED_DIR_NAMES = frozenset({"__pycache__", "node_modules", "build", "dist"})
# Folders a project's own environment usually lives in: never the user's code to document
# (mining keeps them: a corpus may be mined from site-packages itself).
ENVIRONMENT_DIR_NAMES = frozenset({"site-packages", "__pypackages__", "venv", "env"})
GIT_SCHEMES = frozenset({"http", "https", "ssh", "git", "file", "git+ssh", "ssh+git"})

NOT_FOUND_HINT = (
    "no such file, directory or known source; expected a directory, git URL, archive, "
    "list file, .jsonl, python:stdlib or python:site-packages"
)

_SCP_LIKE_URL = re.compile(r"^[\w.+-]+@(?P<host>[\w.-]+):(?P<path>.+)$")  # git@host:owner/name
_GITHUB_SHORTHAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")  # owner/name
_SDIST_STEM = re.compile(r"^(?P<name>.+)-(?P<version>\d[^-]*)$")  # name-1.2.3
_CLONE_COMPLETE = "codemt-complete"  # inside the clone's .git folder
_EXTRACTED = ".codemt-extracted.json"  # next to an archive's extracted members


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
class _Limits:
    max_file_bytes: int
    clone_timeout: float
    max_archive_bytes: int
    max_archive_members: int
    exclude_distributions: frozenset[str]  # normalised names


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
    limits = _Limits(
        max_file_bytes=max_file_bytes,
        clone_timeout=clone_timeout,
        max_archive_bytes=max_archive_bytes,
        max_archive_members=max_archive_members,
        exclude_distributions=frozenset(_normalise(name) for name in exclude_distributions),
    )
    try:
        yield from _resolve(spec, Path(cache_dir), limits)
    except OSError as err:
        yield SourceFailure(
            spec, "unreadable", f"{spec}: {err}; check permissions and free disk space"
        )


def _resolve(spec: str, cache_dir: Path, limits: _Limits) -> Iterator[Resolved]:
    text = spec.strip()
    if text.startswith("python:"):
        interpreter_source = _INTERPRETER_SOURCES.get(text)
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
    if _SCP_LIKE_URL.match(text):
        yield _git_repository(spec, text, cache_dir, limits)
        return
    path = Path(text).expanduser()
    if path.is_dir():
        if _is_bare_repository(path):
            yield _git_repository(spec, path.resolve().as_uri(), cache_dir, limits)
        else:
            root = path.resolve()
            yield _directory_repository(_local_directory_name(root), spec, root, limits)
    elif path.is_file():
        yield from _file(spec, path, cache_dir, limits)
    elif text.endswith(".git"):
        yield _git_repository(spec, text, cache_dir, limits)
    else:
        yield SourceFailure(spec, "not_found", f"{spec}: {NOT_FOUND_HINT}")


def _file(spec: str, path: Path, cache_dir: Path, limits: _Limits) -> Iterator[Resolved]:
    filename = path.name.lower()
    archive_suffix = _archive_suffix(filename)
    if filename.endswith(PYTHON_SUFFIXES):
        file = path.resolve()
        files, skipped = _single_file(file, file.parent, limits.max_file_bytes)
        name = f"{file.parent.name}/{file.name}"
        yield Repository(name, spec, file.parent, tuple(files), _sorted_counts(skipped))
    elif filename.endswith(JSONL_SUFFIXES):
        yield JsonlSource(spec, path.resolve())
    elif archive_suffix is not None:
        yield _archive_repository(spec, path, archive_suffix, cache_dir, limits)
    else:
        try:
            specs = expand_sources([spec])
        except ValueError as err:
            yield SourceFailure(spec, "bad_list", str(err))
            return
        for item in specs:
            yield from _resolve(item, cache_dir, limits)


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
    if "://" in line or _SCP_LIKE_URL.match(line) or line.startswith("python:"):
        return line
    path = Path(line).expanduser()
    if path.is_absolute():
        return str(path)
    local = folder / path
    if not local.exists() and _GITHUB_SHORTHAND.match(line) and not _has_file_suffix(line):
        return f"https://github.com/{line}"
    return os.path.normpath(local)


def _is_list_file(path: Path) -> bool:
    return path.is_file() and not _has_file_suffix(path.name)


def _has_file_suffix(name: str) -> bool:
    """Whether `name` ends like a file `resolve` reads directly (not a list file)."""
    lowered = name.lower()
    return (
        lowered.endswith(PYTHON_SUFFIXES + JSONL_SUFFIXES) or _archive_suffix(lowered) is not None
    )


# --- local directories and files ----------------------------------------------------------


def _directory_repository(name: str, spec: str, root: Path, limits: _Limits) -> Repository:
    walk = _walk(root, limits.max_file_bytes)
    return Repository(
        name, spec, root, tuple(walk.files), _sorted_counts(walk.skipped), tuple(walk.left_out)
    )


@dataclass
class _Walk:
    """What a walk of a folder found: the files to mine and what it left out."""

    files: list[Path]
    skipped: Counter[str]  # files left out, by reason
    left_out: list[Skip]  # folders that could not be listed


def _walk(root: Path, max_file_bytes: int) -> _Walk:
    """The Python files under the resolved `root`, never leaving it, and what was left out.

    A folder that cannot be listed (no permission, gone meanwhile) is left out alone.
    """
    walk = _Walk([], Counter(), [])

    def unlistable(error: OSError) -> None:
        folder = error.filename or root
        walk.left_out.append(
            Skip(
                "unreadable_folder",
                f"{folder}: cannot list this folder ({error.strerror or error}); its files are "
                "left out, check its permissions",
            )
        )

    # os.walk does not descend into linked folders.
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        folder = Path(dirpath)
        dirnames[:] = [name for name in dirnames if not is_skipped_folder(folder / name)]
        for filename in filenames:
            if filename.endswith(PYTHON_SUFFIXES):
                file_paths, file_skipped = _single_file(folder / filename, root, max_file_bytes)
                walk.files += file_paths
                walk.skipped += file_skipped
    walk.files.sort()
    return walk


def _single_file(path: Path, root: Path, max_file_bytes: int) -> tuple[list[Path], Counter[str]]:
    """`[path]` if it is a regular file of allowed size inside `root`, else the reason it is not."""
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            return [], Counter(["symlink_outside"])
        status = path.stat()
    except FileNotFoundError:
        return [], Counter(["missing"])
    except RuntimeError:  # Path.resolve on a symlink loop (Python < 3.13)
        return [], Counter(["symlink_loop"])
    except OSError as error:  # no permission to look inside its folder, a link loop, ...
        return [], Counter(["symlink_loop" if error.errno == errno.ELOOP else "unreadable"])
    if not stat.S_ISREG(status.st_mode):
        return [], Counter(["not_regular"])
    if status.st_size > max_file_bytes:
        return [], Counter(["too_large"])
    return [path], Counter()


def is_skipped_folder(path: Path, names: frozenset[str] = SKIPPED_DIR_NAMES) -> bool:
    """Whether a folder holds no one's own source: hidden (.git, .tox), named in `names`
    (build output by default), `*.egg-info`, or a virtual or conda environment."""
    name = path.name
    if name.startswith(".") or name in names or name.endswith(".egg-info"):
        return True
    try:
        return (path / "pyvenv.cfg").is_file() or (path / "conda-meta").is_dir()
    except OSError:  # a folder we may not look into: the walk records it when listing fails
        return False


def _local_directory_name(root: Path) -> str:
    """A git working tree is named after its origin (host/owner/name), other folders by name."""
    git_config = root / ".git" / "config"
    try:
        is_git_tree = git_config.is_file()
    except OSError:  # an unreadable .git folder: name the folder itself
        return root.name
    if is_git_tree:
        command = ["git", "config", "--file", str(git_config), "--get", "remote.origin.url"]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=30, env=_git_environment()
            )
        except (OSError, subprocess.SubprocessError):
            return root.name
        name = _name_from_url(result.stdout.strip()) if result.returncode == 0 else None
        if name:
            return name
    return root.name


# --- git ------------------------------------------------------------------------------------


def _url(spec: str, url: str, cache_dir: Path, limits: _Limits) -> Resolved:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and _has_file_suffix(parts.path):
        return SourceFailure(
            spec,
            "unsupported",
            f"{_without_credentials(url)}: downloading files is not supported; "
            "download it and pass the local path",
        )
    if scheme not in GIT_SCHEMES:
        return SourceFailure(
            spec,
            "unsupported",
            f"{spec}: unsupported URL scheme {scheme!r}; expected a git URL "
            "(https, ssh, git or file)",
        )
    return _git_repository(spec, url, cache_dir, limits)


def _git_repository(spec: str, url: str, cache_dir: Path, limits: _Limits) -> Resolved:
    """Shallow-clone `url` into the cache (or reuse an earlier clone) and walk it."""
    name = _name_from_url(url) or Path(urlsplit(url).path).name.removesuffix(".git")
    url_hash = hashlib.sha256(url.encode()).hexdigest()[:12]
    clone_dir = cache_dir / "git" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{url_hash}"
    if not (clone_dir / ".git" / _CLONE_COMPLETE).is_file():
        error = _clone(url, clone_dir, limits.clone_timeout)
        if error is not None:
            return SourceFailure(spec, "clone_failed", f"{name}: {error}")
    return _directory_repository(name, spec, clone_dir.resolve(), limits)


def _clone(url: str, clone_dir: Path, timeout: float) -> str | None:
    """Clone into a temp folder renamed to `clone_dir`; on failure, what to tell the user."""
    is_local = urlsplit(url).scheme.lower() in ("file", "") and not _SCP_LIKE_URL.match(url)
    command = ["git", "-c", "core.hooksPath=/dev/null"]
    if is_local:
        command += ["-c", "protocol.file.allow=always"]
    if clone_dir.exists():  # left by a run that stopped before marking it complete
        shutil.rmtree(clone_dir)
    clone_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=".clone-", dir=clone_dir.parent))
    command += ["clone", "--depth", "1", "--no-tags", "--single-branch"]
    command += ["--no-recurse-submodules", "--template=", "--", url, str(temp_dir)]
    try:
        subprocess.run(
            command,
            env=_git_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=True,
        )
    except FileNotFoundError:
        shutil.rmtree(temp_dir)
        return "git is not installed; install git or pass a local directory instead"
    except subprocess.TimeoutExpired:
        shutil.rmtree(temp_dir)
        return (
            f"git clone took longer than {timeout:g} s; raise the clone timeout, or clone "
            "it yourself and pass the folder"
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(temp_dir)
        return f"git clone failed: {_git_error_line(err.stderr)}; check the URL and your access"
    (temp_dir / ".git" / _CLONE_COMPLETE).touch()
    _move_into_place(temp_dir, clone_dir)
    return None


def _git_environment() -> dict[str, str]:
    """The environment for git: never prompt for credentials, never fetch LFS objects."""
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",  # answers every credential question with an empty string
        SSH_ASKPASS="true",
        GCM_INTERACTIVE="never",
        GIT_LFS_SKIP_SMUDGE="1",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _git_error_line(stderr: str) -> str:
    """The line of git's stderr that says what went wrong (the last fatal/error line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (errors or lines or ["no error message"])[-1]


def _name_from_url(url: str) -> str | None:
    """host/owner/name for a remote git URL, without scheme, credentials, port or .git."""
    scp_like = _SCP_LIKE_URL.match(url)
    if scp_like:
        host, path = scp_like["host"].lower(), scp_like["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() not in GIT_SCHEMES - {"file"} or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    return f"{host}/{path}" if path else None


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _is_bare_repository(path: Path) -> bool:
    return (
        (path / "HEAD").is_file()
        and (path / "objects").is_dir()
        and (path / "refs").is_dir()
        and not (path / ".git").exists()
    )


# --- archives -------------------------------------------------------------------------------


class _BadArchive(Exception):
    """An archive over the extraction limits (the message says which and what to do)."""


class _Damaged(Exception):
    """Reading an archive failed part way (the message says where); what came before is good."""


# Whatever a damaged or hostile archive makes tarfile, zipfile or the decompressors raise.
_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,  # zipfile: an encrypted member
    NotImplementedError,  # zipfile: an unsupported compression method
)


def _archive_repository(
    spec: str, path: Path, suffix: str, cache_dir: Path, limits: _Limits
) -> Resolved:
    """Extract the archive's Python files into the cache (or reuse them) and walk them."""
    extract_dir = cache_dir / "archives" / _sha256(path)[:16]
    manifest = extract_dir / _EXTRACTED
    if not manifest.is_file():
        if extract_dir.exists():  # left by a run that stopped before writing the manifest
            shutil.rmtree(extract_dir)
        extract_dir.parent.mkdir(parents=True, exist_ok=True)
        temp_dir = Path(tempfile.mkdtemp(prefix=".extract-", dir=extract_dir.parent))
        try:
            extraction = _ARCHIVE_EXTRACTORS[suffix](path, temp_dir, limits)
        except _BadArchive as err:
            shutil.rmtree(temp_dir)
            return SourceFailure(spec, "bad_archive", f"{spec}: {err}")
        except _ARCHIVE_ERRORS as err:
            shutil.rmtree(temp_dir)
            return SourceFailure(
                spec,
                "bad_archive",
                f"{spec}: cannot read the archive ({err}); check that it is a complete "
                f"{suffix} file, e.g. download it again",
            )
        summary = {
            "root": extraction.root_folder(),
            "skipped": extraction.skipped,
            "damage": extraction.damage,
        }
        (temp_dir / _EXTRACTED).write_text(json.dumps(summary), encoding="utf-8")
        _move_into_place(temp_dir, extract_dir)
    summary = json.loads(manifest.read_text(encoding="utf-8"))
    skipped = Counter(summary["skipped"])
    root = (extract_dir / summary["root"]).resolve()
    if not root.is_dir():  # its top folder held no Python file, so none was extracted there
        root = extract_dir.resolve()
    walk = _walk(root, limits.max_file_bytes)
    if summary.get("damage"):
        walk.left_out.insert(0, Skip("damaged_archive", summary["damage"]))
    name = _archive_name(path.name, suffix)
    return Repository(
        name,
        spec,
        root,
        tuple(walk.files),
        _sorted_counts(skipped + walk.skipped),
        tuple(walk.left_out),
    )


class _Extraction:
    """Writes the Python members of one archive under `dest`, within the limits."""

    def __init__(self, dest: Path, limits: _Limits) -> None:
        self.dest = dest
        self.limits = limits
        self.members = 0
        self.total_bytes = 0
        self.skipped: Counter[str] = Counter()
        self.top_level: set[tuple[str, bool]] = set()  # (first path part, is a folder)
        self.damage: str | None = None  # where and why reading stopped part way, if it did

    def stop_at(self, damage: _Damaged) -> None:
        """Record that the rest of the archive cannot be read; the members so far are kept."""
        self.damage = (
            f"archive damaged {damage}; its Python files before the damage are mined, the "
            "rest is left out (download it again to mine it whole)"
        )

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise _BadArchive(
                f"more than {self.limits.max_archive_members} members, which looks like an "
                "archive bomb; raise the member limit if you trust this archive"
            )

    def refuse(self) -> None:
        self.skipped["unsafe_member"] += 1

    def add_folder(self, name: str) -> None:
        relative = _safe_member_path(name)
        if relative is not None:
            self.top_level.add((relative.parts[0], True))

    def add(self, name: str, size: int, open_member: Callable[[], IO[bytes]]) -> None:
        """Write member `name` if it is a safe Python file path; `size` is from its header."""
        relative = _safe_member_path(name)
        if relative is None:
            self.refuse()
            return
        self.top_level.add((relative.parts[0], len(relative.parts) > 1))
        if not relative.name.endswith(PYTHON_SUFFIXES):
            return
        if size > self.limits.max_file_bytes:
            self.skipped["too_large"] += 1
            return
        self.total_bytes += size
        if self.total_bytes > self.limits.max_archive_bytes:
            raise _BadArchive(
                f"its Python files hold more than {self.limits.max_archive_bytes} bytes, which "
                "looks like an archive bomb; raise the size limit if you trust this archive"
            )
        # Read whole before writing, so that damage leaves no cut file behind; tarfile and
        # zipfile stop reading at the size in the member's header.
        try:
            with open_member() as member:
                data = member.read()
        except _ARCHIVE_ERRORS as err:
            raise _Damaged(f"in member {self.members} ({name}): {err}") from None
        target = self.dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def root_folder(self) -> str:
        """The one folder holding every member (an sdist's name-1.2.3/), else ""."""
        if len(self.top_level) == 1:
            ((name, is_folder),) = self.top_level
            if is_folder:
                return name
        return ""


def _extract_tar(archive: Path, dest: Path, limits: _Limits) -> _Extraction:
    """A tar is read in order: damage part way stops it, keeping the members before."""
    extraction = _Extraction(dest, limits)
    with tarfile.open(archive, "r:*", tarinfo=_StrictTarInfo) as tar:
        try:
            for member in _tar_members(tar, extraction):
                if member.isdir():
                    extraction.add_folder(member.name)
                    continue
                if not member.isreg() or not _passes_data_filter(member, dest):
                    extraction.refuse()  # links, devices and fifos: never extracted
                    continue
                extraction.add(member.name, member.size, partial(tar.extractfile, member))
        except _Damaged as damage:
            extraction.stop_at(damage)
    return extraction


def _tar_members(tar: tarfile.TarFile, extraction: _Extraction) -> Iterator[tarfile.TarInfo]:
    """The members of `tar`, each counted; raises _Damaged where a header cannot be read."""
    members = iter(tar)
    last = "the start"
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except _ARCHIVE_ERRORS as err:
            raise _Damaged(f"after member {extraction.members} ({last}): {err}") from None
        extraction.count_member()
        last = member.name
        yield member


class _StrictTarInfo(tarfile.TarInfo):
    """Makes tarfile raise at a cut or garbled member header, where it would end quietly as
    if the archive ended there (it does so for any header but the first)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise  # a block of zeros: the end-of-archive marker
        except tarfile.EmptyHeaderError:
            raise tarfile.ReadError("the file ends without the end-of-archive marker") from None
        except tarfile.HeaderError as err:
            raise tarfile.ReadError(f"bad member header ({err})") from None


def _extract_zip(archive: Path, dest: Path, limits: _Limits) -> _Extraction:
    """A zip's members are read one by one from its directory: a damaged one is skipped."""
    extraction = _Extraction(dest, limits)
    with zipfile.ZipFile(archive) as zip_file:
        for info in zip_file.infolist():
            extraction.count_member()
            if info.is_dir():
                extraction.add_folder(info.filename)
                continue
            # Unix file type in the high word; 0 when the archive was made without one.
            if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
                extraction.refuse()  # a symlink or device stored by a unix zip tool
                continue
            try:
                extraction.add(info.filename, info.file_size, partial(zip_file.open, info))
            except _Damaged:
                extraction.skipped["damaged_member"] += 1
    return extraction


_ARCHIVE_EXTRACTORS: dict[str, Callable[[Path, Path, _Limits], _Extraction]] = {
    ".tar.gz": _extract_tar,
    ".tgz": _extract_tar,
    ".tar.bz2": _extract_tar,
    ".tar.xz": _extract_tar,
    ".tar": _extract_tar,
    ".zip": _extract_zip,
    ".whl": _extract_zip,
}


def _archive_suffix(filename: str) -> str | None:
    lowered = filename.lower()
    return next((suffix for suffix in _ARCHIVE_EXTRACTORS if lowered.endswith(suffix)), None)


def _safe_member_path(name: str) -> PurePosixPath | None:
    """The member's path relative to the extraction folder, or None if it could escape it."""
    posix = name.replace("\\", "/")
    if "\x00" in posix or posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return None
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _passes_data_filter(member: tarfile.TarInfo, dest: Path) -> bool:
    """Python's own "data" extraction filter, a second opinion on our checks (3.10.12+)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return True
    try:
        data_filter(member, str(dest))
    except tarfile.FilterError:
        return False
    return True


def _archive_name(filename: str, suffix: str) -> str:
    """pypi/<name> for wheels and sdists (name-1.2.3.tar.gz), else the archive's stem."""
    stem = filename[: -len(suffix)]
    if suffix == ".whl":
        return f"pypi/{_normalise(stem.split('-')[0])}"
    sdist = _SDIST_STEM.match(stem)
    return f"pypi/{_normalise(sdist['name'])}" if sdist else stem


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(partial(file.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the running interpreter ----------------------------------------------------------------


def _stdlib_repositories(spec: str, limits: _Limits) -> Iterator[Resolved]:
    """One repository per top-level module or package of the interpreter's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    # Only importable names: this leaves out site-packages, lib-dynload, config-3.x-..., etc.
    for entry in sorted(stdlib.iterdir()):
        if entry.is_dir() and entry.name.isidentifier() and entry.name != "__pycache__":
            walk = _walk(entry, limits.max_file_bytes)
            name = entry.name
        elif entry.name.endswith(PYTHON_SUFFIXES) and entry.stem.isidentifier():
            walk = _Walk(*_single_file(entry, stdlib, limits.max_file_bytes), [])
            name = entry.stem
        else:
            continue
        yield Repository(
            f"python/stdlib/{name}",
            spec,
            stdlib,
            tuple(walk.files),
            _sorted_counts(walk.skipped),
            tuple(walk.left_out),
        )


def _site_package_repositories(spec: str, limits: _Limits) -> Iterator[Resolved]:
    """One repository per installed distribution, from the files its RECORD lists."""
    seen: set[str] = set()
    for distribution in metadata.distributions(path=_site_dirs()):
        site_dir = Path(distribution.locate_file("")).resolve()
        raw_name = distribution.metadata["Name"]
        if raw_name is None:
            yield SourceFailure(
                spec,
                "bad_metadata",
                f"{spec}: a distribution in {site_dir} has no Name in its metadata; "
                "reinstall or remove it",
            )
            continue
        name = _normalise(raw_name)
        if name in seen or name in limits.exclude_distributions:
            continue
        seen.add(name)  # the first one on sys.path wins, as it does for imports
        yield _distribution_repository(spec, distribution, name, site_dir, limits)


def _distribution_repository(
    spec: str, distribution: metadata.Distribution, name: str, site_dir: Path, limits: _Limits
) -> Resolved:
    if distribution.files is None:
        return SourceFailure(
            spec,
            "no_record",
            f"{spec}: {name} {distribution.version} in {site_dir} has no RECORD listing its "
            "files; reinstall it with pip to mine it",
        )
    files: list[Path] = []
    skipped: Counter[str] = Counter()
    for packaged in distribution.files:
        if not packaged.name.endswith(PYTHON_SUFFIXES):
            continue
        path = Path(distribution.locate_file(packaged)).resolve()
        if not path.is_relative_to(site_dir):
            skipped["outside_site"] += 1  # e.g. an editable install's source tree
            continue
        file_paths, file_skipped = _single_file(path, site_dir, limits.max_file_bytes)
        files += file_paths
        skipped += file_skipped
    return Repository(
        f"pypi/{name}", spec, site_dir, tuple(sorted(set(files))), _sorted_counts(skipped)
    )


def _site_dirs() -> list[str]:
    """The interpreter's site-packages folders in sys.path order (not the working directory,
    where a project's own *.egg-info would otherwise pass for an installed distribution)."""
    site_dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        site_dirs.append(site.getusersitepackages())
    real_site_dirs = {os.path.realpath(folder) for folder in site_dirs}
    return [entry for entry in sys.path if entry and os.path.realpath(entry) in real_site_dirs]


_INTERPRETER_SOURCES: dict[str, Callable[[str, _Limits], Iterator[Resolved]]] = {
    "python:stdlib": _stdlib_repositories,
    "python:site-packages": _site_package_repositories,
}


# --- small shared pieces --------------------------------------------------------------------


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name: runs of -_. become '-', lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _sorted_counts(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((reason, count) for reason, count in counts.items() if count))


def _move_into_place(temp_dir: Path, final_dir: Path) -> None:
    """Rename a finished temp folder to `final_dir`; if another run got there first, keep its."""
    try:
        temp_dir.rename(final_dir)
    except OSError:
        if not final_dir.is_dir():
            raise
        shutil.rmtree(temp_dir)
