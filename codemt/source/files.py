"""Finding a project's Python files: one walk and one rule for the folders it leaves out.

Mining (`codemt.mine.folders`) walks folders with `walk`; writing docstrings
(`codemt.write.docstring`) and the project memory take a project's files from
`find_files`, which walks with it and leaves out what .gitignore ignores. `walk` never
enters a linked folder (so it never leaves its root through one), nor a folder that holds
no one's own source (`is_skipped_folder`: hidden, build output, virtual and conda
environments), nor one the caller's own rule refuses.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pathspec

PYTHON_SUFFIXES = (".py", ".pyw")
# Hidden folders (.git, .tox, .eggs, ...) are skipped too, as are virtualenvs and *.egg-info
# (`is_skipped_folder`).
SKIPPED_DIR_NAMES = frozenset({"__pycache__", "node_modules", "build", "dist"})
# Folders a project's own environment usually lives in: never the user's code to document
# (mining keeps them: a corpus may be mined from site-packages itself).
ENVIRONMENT_DIR_NAMES = frozenset({"site-packages", "__pypackages__", "venv", "env"})


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


def walk(
    root: Path,
    *,
    skipped_names: frozenset[str] = SKIPPED_DIR_NAMES,
    keep_folder: Callable[[Path], bool] | None = None,
    on_error: Callable[[OSError], None] | None = None,
) -> Iterator[tuple[Path, list[str]]]:
    """Every folder under `root` (itself first) with the names of its files, sorted.

    Subfolders are entered in name order unless `is_skipped_folder` (with `skipped_names`)
    or `keep_folder` refuses them; `keep_folder` is asked after their parent was yielded,
    so a caller may learn from a folder (its .gitignore) before its subfolders are chosen.
    A folder that cannot be listed is passed to `on_error` and left out alone.
    """
    # os.walk does not descend into linked folders.
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        folder = Path(dirpath)
        yield folder, sorted(filenames)
        dirnames[:] = sorted(
            name
            for name in dirnames
            if not is_skipped_folder(folder / name, skipped_names)
            and (keep_folder is None or keep_folder(folder / name))
        )


# ------------------------------------------------------------------ a project's files


def _git_ignored(root: Path, files: list[Path]) -> set[Path] | None:
    """The files git ignores, or None when `root` is not in a git work tree (or git fails)."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        answer = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "--stdin", "-z"],
            input=b"\0".join(str(f.relative_to(root)).encode() for f in files),
            capture_output=True,
        )
    except OSError:  # no git installed
        return None
    if answer.returncode not in (0, 1):  # 1: nothing ignored; more: git could not tell
        return None
    return {root / name for name in answer.stdout.decode().split("\0") if name}


class _GitignoreFiles:
    """The .gitignore files met while walking a folder tree, matched as git does (pathspec).

    They prune ignored folders during the walk; for files, git has the last word where
    there is a work tree (it also knows .git/info/exclude and the global excludes file).
    """

    def __init__(self) -> None:
        self.specs: list[tuple[Path, pathspec.GitIgnoreSpec]] = []

    def add(self, folder: Path) -> None:
        """Read the folder's .gitignore, if it has one."""
        ignore = folder / ".gitignore"
        if ignore.is_file():
            lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
            self.specs.append((folder, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignores(self, path: Path, *, folder: bool) -> bool:
        """Whether a .gitignore read so far ignores the path (a folder if `folder`)."""
        for base, spec in self.specs:
            if base in path.parents:
                relative = path.relative_to(base).as_posix() + ("/" if folder else "")
                if spec.match_file(relative):
                    return True
        return False


def _project_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """The files under a folder that are the user's source and match `include`."""
    include_spec = pathspec.GitIgnoreSpec.from_lines(include)
    exclude_spec = pathspec.GitIgnoreSpec.from_lines(exclude)
    gitignore = _GitignoreFiles()
    found = []

    def keep(folder: Path) -> bool:
        relative = folder.relative_to(root).as_posix() + "/"
        return not exclude_spec.match_file(relative) and not gitignore.ignores(folder, folder=True)

    # Environments are never the user's code to document (mining keeps them).
    skipped = SKIPPED_DIR_NAMES | ENVIRONMENT_DIR_NAMES
    for here, names in walk(root, skipped_names=skipped, keep_folder=keep):
        gitignore.add(here)
        for name in names:
            relative = (here / name).relative_to(root).as_posix()
            if include_spec.match_file(relative) and not exclude_spec.match_file(relative):
                found.append(here / name)
    ignored = _git_ignored(root, found)
    if ignored is None:
        return [f for f in found if not gitignore.ignores(f, folder=False)]
    return [f for f in found if f not in ignored]


def file_identity(file: Path) -> Path:
    """What makes two paths the same file: the resolved path; a symlink loop (`a.py ->
    b.py -> a.py`) is its own, and reading it later fails with a message naming it."""
    try:
        return file.resolve()
    except (OSError, RuntimeError):  # RuntimeError: pathlib's "Symlink loop" before 3.13
        return file.absolute()


def find_files(
    paths: Iterable[str | Path],
    *,
    include: Sequence[str] = ("*.py",),
    exclude: Sequence[str] = (),
) -> list[Path]:
    """A project's source files under files and folders, each once, in a stable order.

    Folders are searched recursively (`walk`), for the files `include` matches that
    neither `exclude` nor a .gitignore (git's own answer, where there is a work tree)
    leaves out; `include` and `exclude` are gitignore-style globs, matched against paths
    relative to the folder given. Files named directly are always taken (pre-commit names
    them), unless an `exclude` glob matches them. Raises FileNotFoundError for a path that
    does not exist.
    """
    excluded = pathspec.GitIgnoreSpec.from_lines(exclude)
    files: dict[Path, Path] = {}
    for given in map(Path, paths):
        if given.is_dir():
            for file in _project_files(given, include, exclude):
                files.setdefault(file_identity(file), file)
        elif given.is_file():
            if not excluded.match_file(given.as_posix()):
                files.setdefault(given.resolve(), given)
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    return list(files.values())
