"""Project memory: a project's documented functions, searched for the neighbours of another.

A 14M-parameter model cannot know a project's vocabulary from one function, but the
project knows it: its other documented functions are written the same way ("Downloads
Sina videos by URL.", "Downloads CBS videos by URL."). A `Memory` indexes documented
functions (signature, docstring summary, body) with BM25 (`bm25s`) over the words of their
identifiers, and returns the few most like a given function, never the function itself.
The model reads them as extra sources (`codemt.examples.build_translation`), trained so on
neighbours from the same repository of its corpus (`split_neighbors`).

    memory = ProjectMemory.open("~/src/myproject", progress=True)  # cached on disk
    memory.neighbors(record, k=3)                                  # -> list[Neighbor]

`ProjectMemory` builds a project's memory from its files with the miner's extractor and
keeps it in `~/.cache/codemt/memory/` keyed by each file's content, so a rebuild reads
every file but parses only those that changed; `refresh(path)` takes one file anew (the
language server does on save).
"""

from __future__ import annotations

import hashlib
import json
import keyword
import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codemt import __version__, corpus
from codemt.source.docstrings import prose_summary
from codemt.source.extract import extract_methods
from codemt.source.files import find_files
from codemt.source.reading import SkipFile, decode_source, parse_with_repairs, rare_collections

# Bumped whenever what a cache file holds changes: an older cache is rebuilt, not trusted.
CACHE_FORMAT = 1
# `ProjectMemory`'s default cache folder: `user_cache_dir()`, read when a memory is made.
USER_CACHE = "user"
# Folders (or files) that mark a project's root.
ROOT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg")
# A memory holds at most this many functions: a huge tree (a monorepo, a home folder) is
# cut, and said so, rather than making every request slow.
MAX_FUNCTIONS = 50_000
MAX_FILES = 20_000
# What a neighbour's body keeps: its first lines, enough to show how siblings are written.
BODY_CHARS = 600

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# Words every function has, which say nothing about what one does.
_STOP_WORDS = frozenset(keyword.kwlist) | {
    "self", "cls", "args", "kwargs", "none", "true", "false", "return", "def", "str", "int",
    "len", "isinstance", "is", "not", "in", "the", "a", "an", "of", "to", "and", "or",
}  # fmt: skip


def _bm25() -> Any:
    """The `bm25s` module, its logger quiet: it logs each index it builds at DEBUG level
    (its own), which any handler on the root logger (as a library's `logging.basicConfig`
    installs, rouge-score's among them) would print to the user."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def user_cache_dir() -> Path:
    """Where project memories are cached: `$CODEMT_CACHE/memory`, by default
    `~/.cache/codemt/memory`."""
    base = os.environ.get("CODEMT_CACHE") or Path.home() / ".cache" / "codemt"
    return Path(base) / "memory"


def code_words(text: str) -> list[str]:
    """The words of a piece of code's identifiers, lower-case: `getHTTPResponse_code(self)`
    -> get, http, response, code. One-letter words and keywords are dropped."""
    return [
        w for w in (m.lower() for m in _WORDS.findall(text)) if len(w) > 1 and w not in _STOP_WORDS
    ]


@dataclass(frozen=True)
class Neighbor:
    """A documented function of a project, as the model reads it beside another one."""

    name: str  # qualified: `Class.method`
    signature: str
    docstring: str  # the summary: the docstring's first paragraph, on one line
    body: str = ""  # its first lines (`BODY_CHARS`)
    path: str = ""  # relative to the project's root ("" where it has none)
    line: int = 0

    def as_record(self) -> dict[str, Any]:
        """The features `codemt.examples.feature_texts` reads, and where the function is
        (`name`, `path`, `line`: to tell the user whose summary a docstring is)."""
        return {
            "signature": self.signature,
            "docstring": self.docstring,
            "body": self.body,
            "name": self.name,
            "path": self.path,
            "line": self.line,
        }


def neighbor_of(record: dict[str, Any], path: str = "") -> Neighbor | None:
    """A method record (the miner's, `codemt.translate.parse_method`'s) as a neighbour; None
    when it has no docstring to offer."""
    summary = prose_summary(record.get("docstring") or "")
    if not summary:
        return None
    return Neighbor(
        name=str(record.get("name") or ""),
        signature=str(record.get("signature") or ""),
        docstring=summary,
        body=_head(str(record.get("body") or "")),
        path=path or str(record.get("path") or ""),
        line=int(record.get("lineno") or 0),
    )


def _head(body: str) -> str:
    """The first whole lines of a body within `BODY_CHARS`."""
    if len(body) <= BODY_CHARS:
        return body
    cut = body.rfind("\n", 0, BODY_CHARS)
    return body[: cut if cut > 0 else BODY_CHARS]


def likeness(record: dict[str, Any], neighbor: dict[str, Any]) -> float:
    """How alike a method's code and a neighbour's are, 0 to 1: the share of the words of
    their signatures and their bodies' first lines (`BODY_CHARS`) that both have (Jaccard).
    Bodies count only where both have words in them: a signature alone (a request's
    context item, a method given by its `def` line) or a stub (`pass`) is compared by
    signature.

    The closer a sibling's code, the likelier its summary says what this method does:
    ranking the project's summaries by it scores higher on every held-out set
    (docs/experiments.md)."""
    ours_body = set(code_words(_head(str(record.get("body") or ""))))
    theirs_body = set(code_words(_head(str(neighbor.get("body") or ""))))
    ours = set(code_words(str(record.get("signature") or "")))
    theirs = set(code_words(str(neighbor.get("signature") or "")))
    if ours_body and theirs_body:
        ours, theirs = ours | ours_body, theirs | theirs_body
    return len(ours & theirs) / len(ours | theirs) if ours or theirs else 0.0


def query_words(record: dict[str, Any], target: str = "docstring") -> list[str]:
    """What a function is searched by: the words of its name and of the features the model
    translates from (for a docstring, signature and body; for a body, signature and
    docstring), the name's words counted twice, as the strongest hint."""
    name = str(record.get("name") or "").rsplit(".", 1)[-1]
    parts = [name, name, record.get("signature") or ""]
    parts += [record.get(f) or "" for f in ("body", "docstring") if f != target]
    return code_words(" ".join(parts))


def _document_words(neighbor: Neighbor) -> list[str]:
    name = neighbor.name.rsplit(".", 1)[-1]
    return code_words(" ".join([name, name, neighbor.signature, neighbor.body]))


def _code_key(signature: str, body: str) -> str:
    return hashlib.sha256(f"{signature}\0{body}".encode("utf-8", "surrogatepass")).hexdigest()


class Memory:
    """Documented functions indexed for search: BM25 over their identifier words.

    Built once from a list of neighbours (a project's, or the other rows of one repository
    of an evaluation file); `neighbors(record, k)` is then milliseconds.
    """

    def __init__(self, entries: Sequence[Neighbor], *, truncated: bool = False) -> None:
        self.entries = list(entries)
        self.truncated = truncated
        self._keys = [(e.path, e.name) for e in self.entries]
        self._code = [_code_key(e.signature, e.body) for e in self.entries]
        self._index = None
        words = [_document_words(e) for e in self.entries]
        if any(words):
            self._index = _bm25().BM25()
            self._index.index(words, show_progress=False)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> Memory:
        """A memory of the documented ones among method records."""
        return cls([n for n in map(neighbor_of, records) if n is not None])

    def scores(self, words: Sequence[str]) -> np.ndarray:
        """Every entry's BM25 score for a query's words (float32, one per entry)."""
        if self._index is None or not words:
            return np.zeros(len(self.entries), np.float32)
        known = [w for w in dict.fromkeys(words) if w in self._index.vocab_dict]
        if not known:
            return np.zeros(len(self.entries), np.float32)
        return np.asarray(self._index.get_scores(known), dtype=np.float32)

    def search(
        self,
        record: dict[str, Any],
        k: int = 3,
        *,
        target: str = "docstring",
        path: str | None = None,
    ) -> list[int]:
        """The indices of the `k` entries most like a method (a record), best first; never
        the method itself (the same qualified name in the same file, or the very same code),
        nor an entry that shares no word with it. `path` stands for the record's own."""
        if k <= 0 or not self.entries:
            return []
        scores = self.scores(query_words(record, target))
        own_path = str(record.get("path") or "") if path is None else path
        own = (own_path, str(record.get("name") or ""))
        code = _code_key(str(record.get("signature") or ""), _head(str(record.get("body") or "")))
        wanted = min(k + 8, len(scores))
        top = np.argpartition(-scores, wanted - 1)[:wanted] if wanted < len(scores) else None
        top = np.arange(len(scores)) if top is None else top
        # Best first; ties by position, so the same query always gets the same answer.
        top = top[np.lexsort((top, -scores[top]))]
        found: list[int] = []
        for i in top.tolist():
            if scores[i] <= 0 or len(found) == k:
                break
            if self._keys[i] == own or self._code[i] == code:
                continue
            found.append(i)
        return found

    def neighbors(
        self,
        record: dict[str, Any],
        k: int = 3,
        *,
        target: str = "docstring",
        path: str | None = None,
    ) -> list[Neighbor]:
        """The `k` entries most like a method, best first (see `search`)."""
        return [self.entries[i] for i in self.search(record, k, target=target, path=path)]


# ------------------------------------------------------------------ a project on disk


def project_root(paths: Sequence[str | Path]) -> Path:
    """The root of the project the paths are in: the nearest folder above the first one
    that holds `.git`, `pyproject.toml`, `setup.py` or `setup.cfg`; else that path's folder."""
    if not paths:
        return Path.cwd()
    start = Path(paths[0]).absolute()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in ROOT_MARKERS):
            return candidate
    return folder


@dataclass
class _FileEntry:
    sha256: str
    functions: list[dict[str, Any]]  # Neighbor fields


class ProjectMemory:
    """The memory of a project folder, kept current with its files.

    `open()` reads the project (the Python files `codemt docstring` would search: .gitignore,
    virtual environments and build folders are skipped), reusing what the on-disk cache has
    for files whose content has not changed. A file that cannot be read or parsed is
    skipped and counted in `skipped`; the cache is written atomically, so two processes
    building it at once each write a whole one.

    Thread-safe: the language server refreshes files from one thread while requests search
    from others.
    """

    def __init__(self, root: Path, cache_dir: Path | str | None = USER_CACHE) -> None:
        self.root = Path(root).resolve()
        # None: no cache at all (nothing read or written).
        self.cache_dir = user_cache_dir() if cache_dir == USER_CACHE else cache_dir
        self.files: dict[str, _FileEntry] = {}
        self.skipped: dict[str, str] = {}  # relative path -> why
        self.notes: list[str] = []  # what a user should be told once (a cut, a rebuilt cache)
        self._memory: Memory | None = None
        self._memory_cut_said = False  # the cut is said once, however often it is rebuilt
        self._lock = threading.RLock()

    # -- building

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        cache_dir: Path | str | None = USER_CACHE,
        progress: bool = False,
        files: Sequence[Path] | None = None,
    ) -> ProjectMemory:
        """The memory of the project at `root`, read from its files (and the cache).

        `files`: the Python files to read (default: those `codemt docstring` finds under
        `root`). Raises FileNotFoundError when `root` is not a folder.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such project folder")
        memory = cls(root, cache_dir)
        cached = memory._read_cache()
        paths = memory._project_files() if files is None else list(files)
        if len(paths) > MAX_FILES:
            memory.notes.append(
                f"{memory.root} has {len(paths):,} Python files: the project memory reads the "
                f"first {MAX_FILES:,} (use --project on a smaller folder)"
            )
            paths = paths[:MAX_FILES]
        from tqdm.auto import tqdm

        bar = tqdm(
            paths,
            desc="project memory",
            unit="file",
            disable=not progress or len(paths) < 50,
            file=sys.stderr,
        )
        with rare_collections():
            for path in bar:
                memory._take(path, cached)
        memory._save_cache()
        return memory

    def _project_files(self) -> list[Path]:

        return find_files([self.root])

    def _relative(self, path: Path) -> str:
        try:
            return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return Path(os.path.abspath(path)).as_posix()

    def _take(self, path: Path, cached: dict[str, _FileEntry], text: str | None = None) -> None:
        """Read one file into the memory (its cached functions if its content is the same)."""
        relative = self._relative(path)
        try:
            data = text.encode("utf-8") if text is not None else Path(path).read_bytes()
        except OSError as error:
            self._skip(relative, f"cannot read: {error.strerror or error}")
            return
        digest = hashlib.sha256(data).hexdigest()
        previous = cached.get(relative)
        if previous is not None and previous.sha256 == digest:
            with self._lock:
                self.files[relative] = previous
                self.skipped.pop(relative, None)
                self._memory = None
            return
        try:
            functions = _documented_functions(data, relative)
        except ValueError as error:
            self._skip(relative, str(error))
            return
        with self._lock:
            self.files[relative] = _FileEntry(digest, functions)
            self.skipped.pop(relative, None)
            self._memory = None

    def _skip(self, relative: str, why: str) -> None:
        with self._lock:
            self.files.pop(relative, None)
            self.skipped[relative] = why
            self._memory = None

    def refresh(self, path: str | Path, text: str | None = None) -> None:
        """Take one file anew (its saved content, or `text`); a deleted file leaves."""
        path = Path(path)
        if text is None and not path.is_file():
            with self._lock:
                self.files.pop(self._relative(path), None)
                self._memory = None
            return
        self._take(path, {}, text)

    # -- the cache

    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(str(self.root).encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return Path(self.cache_dir) / f"{key}.json"

    def _read_cache(self) -> dict[str, _FileEntry]:
        path = self._cache_path()
        if path is None or not path.is_file():
            return {}

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if (
                data.get("format") != CACHE_FORMAT
                or data.get("codemt") != __version__
                or data.get("root") != str(self.root)
            ):
                self.notes.append("the project memory's cache is from another version: rebuilt")
                return {}
            return {
                name: _FileEntry(entry["sha256"], [_checked(f) for f in entry["functions"]])
                for name, entry in data["files"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.notes.append(f"the project memory's cache {path} was unreadable: rebuilt")
            return {}

    def _save_cache(self) -> None:
        path = self._cache_path()
        if path is None:
            return

        with self._lock:
            data = {
                "format": CACHE_FORMAT,
                "codemt": __version__,
                "root": str(self.root),
                "files": {name: asdict(entry) for name, entry in self.files.items()},
            }
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)  # whole, whoever writes last
        except OSError as error:
            tmp.unlink(missing_ok=True)
            self.notes.append(f"could not save the project memory's cache to {path}: {error}")

    # -- searching

    @property
    def memory(self) -> Memory:
        """The index over the project's documented functions as they are now."""
        with self._lock:
            if self._memory is None:
                entries = [
                    Neighbor(**f) for name in sorted(self.files) for f in self.files[name].functions
                ]
                truncated = len(entries) > MAX_FUNCTIONS
                if truncated and not self._memory_cut_said:
                    self._memory_cut_said = True
                    self.notes.append(
                        f"{self.root} has {len(entries):,} documented functions: the project "
                        f"memory keeps the first {MAX_FUNCTIONS:,} (use --project on a smaller "
                        f"folder)"
                    )
                self._memory = Memory(entries[:MAX_FUNCTIONS], truncated=truncated)
            return self._memory

    def __len__(self) -> int:
        return len(self.memory)

    def neighbors(
        self, record: dict[str, Any], k: int = 3, *, target: str = "docstring"
    ) -> list[Neighbor]:
        """The `k` documented functions of the project most like `record`, never itself
        (a record's `path` is taken relative to the root, as the memory stores them)."""
        path = self._relative(Path(record["path"])) if record.get("path") else ""
        return self.memory.neighbors(record, k, target=target, path=path)


def _documented_functions(data: bytes, relative: str) -> list[dict[str, Any]]:
    """The documented functions of a file's bytes, as Neighbor fields; ValueError saying
    why a file cannot be read."""
    try:
        tree = parse_with_repairs(decode_source(data, max_bytes=2_000_000), repair=False)[0]
    except SkipFile as error:
        raise ValueError(str(error)) from None
    found = []
    for _, record in extract_methods(tree, repo="", path=relative):
        neighbor = neighbor_of(record, relative)
        if neighbor is not None:
            found.append(asdict(neighbor))
    return found


def _checked(fields: Any) -> dict[str, Any]:
    """A cached function's fields, or a TypeError when the cache holds something else."""
    neighbor = Neighbor(**fields)
    if not all(isinstance(getattr(neighbor, f), str) for f in ("name", "signature", "docstring")):
        raise TypeError("not a cached function")
    return asdict(neighbor)


# ------------------------------------------------------------------ memory for a request


def neighbors_from_request(items: Sequence[dict[str, Any]] | None) -> list[Neighbor]:
    """Neighbours given by a client (`{signature, docstring[, body]}` each) as `Neighbor`s;
    ValueError naming the item that is not one."""
    found = []
    for i, item in enumerate(items or []):
        if not isinstance(item, dict):
            raise ValueError(f"context item {i}: expected an object with signature and docstring")
        signature, docstring = item.get("signature"), item.get("docstring")
        body = item.get("body") or ""
        if not isinstance(signature, str) or not isinstance(docstring, str):
            raise ValueError(f"context item {i}: signature and docstring must be strings")
        if not isinstance(body, str):
            raise ValueError(f"context item {i}: body must be a string")
        summary = prose_summary(docstring)
        if summary:
            found.append(
                Neighbor(name="", signature=signature, docstring=summary, body=_head(body))
            )
    return found


# ------------------------------------------------------------------ a corpus's repositories


def split_neighbors(
    corpus_dir: Path,
    split: str,
    k: int,
    rows: np.ndarray | None = None,
    *,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Training neighbours for a corpus split: per target ("docstring", "body"), an
    (methods, k) int32 array of the row numbers (among `rows`, the split's rows a token
    cache holds; None: all) of each method's most alike documented methods of the same
    repository, -1 where there are fewer. Never a method itself.

    Docstring targets are searched by signature and body, for the methods of the docstring
    task; body targets by signature and docstring, for documented methods (the others
    have no docstring to write a body from).

    The split is read twice, streamed: its repository names first, to know how many
    methods each holds, then its records, a repository's documented methods held only
    until its last method has gone by (the shards keep a repository's methods together,
    so that is about one repository at a time, whatever the size of the corpus).
    """
    from tqdm.auto import tqdm

    if rows is not None and len(rows) > 1 and not (np.diff(rows) > 0).all():
        raise ValueError("split_neighbors: rows must be increasing, each row once")
    repo_of, repos = _repository_codes(corpus_dir, split)
    # Each row of the split: its place in the cache (-1: not in it).
    place = np.full(len(repo_of), -1, dtype=np.int64)
    chosen = np.arange(len(repo_of)) if rows is None else rows
    place[chosen] = np.arange(len(chosen))
    left = np.bincount(repo_of[chosen], minlength=len(repos))
    found = {t: np.full((len(chosen), k), -1, dtype=np.int32) for t in ("docstring", "body")}
    open_repos: dict[int, list[tuple[int, dict]]] = {}
    bar = tqdm(
        total=int((left > 0).sum()),
        desc=f"neighbours ({split})",
        unit="repo",
        disable=not progress,
    )
    columns = ["path", "name", "signature", "docstring", "body", "docstring_task"]
    row = 0
    for batch in corpus.iter_batches(corpus_dir, split, columns, batch_size=4096):
        for record in batch.to_pylist():
            i, repo = int(place[row]), int(repo_of[row])
            row += 1
            if i < 0:
                continue
            if prose_summary(record["docstring"] or ""):
                open_repos.setdefault(repo, []).append((i, record))
            left[repo] -= 1
            if left[repo] == 0:
                _search_repository(open_repos.pop(repo, []), k, found)
                bar.update(1)
    bar.close()
    return found


def _repository_codes(corpus_dir: Path, split: str) -> tuple[np.ndarray, list[str]]:
    """Each row's repository as a number, and the repositories' names."""
    codes, names, index = [], [], {}
    for batch in corpus.iter_batches(corpus_dir, split, ["repo"], batch_size=65536):
        encoded = batch.column(0).dictionary_encode()
        lookup = []
        for name in encoded.dictionary.to_pylist():
            lookup.append(index.setdefault(name, len(index)))
            if len(index) > len(names):
                names.append(name)
        codes.append(np.asarray(lookup, dtype=np.int64)[encoded.indices.to_numpy()])
    return (np.concatenate(codes) if codes else np.zeros(0, np.int64)), names


def _search_repository(
    documented: list[tuple[int, dict]], k: int, found: dict[str, np.ndarray]
) -> None:
    """Fill in the neighbours of a repository's documented methods, among themselves."""
    if len(documented) < 2:
        return
    memory = Memory([neighbor_of(record) for _, record in documented])
    for i, record in documented:
        targets = ("docstring", "body") if record["docstring_task"] else ("body",)
        for target in targets:
            picked = [documented[j][0] for j in memory.search(record, k, target=target)]
            found[target][i, : len(picked)] = picked


# ------------------------------------------------------------------ the command line


def open_project_memory(
    paths: Sequence[str | Path],
    *,
    project: Path | None = None,
    say: Callable[[str], None] | None = None,
    progress: bool = True,
) -> ProjectMemory | None:
    """The memory of `project` (by default the project root of `paths`), or None.

    Never fails its caller: a project that cannot be read, or has no documented function
    yet, falls back to no memory, saying so once through `say` (default: a line on
    stderr)."""
    say = say or (lambda line: print(line, file=sys.stderr))
    root = project or project_root(list(paths))
    try:
        memory = ProjectMemory.open(root, progress=progress)
        size = len(memory)
    except (OSError, ValueError, RuntimeError) as error:
        say(f"codemt: project memory off: {error}")
        return None
    for note in memory.notes:
        say(f"codemt: {note}")
    if not size:
        say(
            f"codemt: {memory.root} has no documented function yet (files that .gitignore "
            f"hides are not read): writing without project memory"
        )
        return None
    return memory
