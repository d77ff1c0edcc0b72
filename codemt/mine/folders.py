"""Local folders and .py files -> repositories: which files are mined, which folders skipped.

A walk never leaves its root: it does not descend into linked folders, and a linked file
leading out of the root is counted, not read. A folder that cannot be listed is left out
alone. `is_skipped_folder` is the one rule for folders that hold no one's own source (build
output, hidden folders, environments); the docstring writer's file walk uses it too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from codemt.mine.resolved import Limits, Repository, Skip, sorted_counts

PYTHON_SUFFIXES = (".py", ".pyw")
# Hidden folders (.git, .tox, .eggs, ...) are skipped too, as are virtualenvs and *.egg-info
# (`is_skipped_folder`).
SKIPPED_DIR_NAMES = frozenset({"__pycache__", "node_modules", "build", "dist"})
# Folders a project's own environment usually lives in: never the user's code to document
# (mining keeps them: a corpus may be mined from site-packages itself).
ENVIRONMENT_DIR_NAMES = frozenset({"site-packages", "__pypackages__", "venv", "env"})


def directory_repository(name: str, spec: str, root: Path, limits: Limits) -> Repository:
    """The repository `name` of the Python files under the resolved folder `root`."""
    walk = walk_folder(root, limits.max_file_bytes)
    return Repository(
        name, spec, root, tuple(walk.files), sorted_counts(walk.skipped), tuple(walk.left_out)
    )


@dataclass
class Walk:
    """What a walk of a folder found: the files to mine and what it left out."""

    files: list[Path]
    skipped: Counter[str]  # files left out, by reason
    left_out: list[Skip]  # folders that could not be listed


def walk_folder(root: Path, max_file_bytes: int) -> Walk:
    """The Python files under the resolved `root`, never leaving it, and what was left out.

    A folder that cannot be listed (no permission, gone meanwhile) is left out alone.
    """
    walk = Walk([], Counter(), [])

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
                file_paths, file_skipped = single_file(folder / filename, root, max_file_bytes)
                walk.files += file_paths
                walk.skipped += file_skipped
    walk.files.sort()
    return walk


def single_file(path: Path, root: Path, max_file_bytes: int) -> tuple[list[Path], Counter[str]]:
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
