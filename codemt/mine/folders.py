"""Local folders and .py files -> repositories: which files are mined, which folders skipped.

The walk is `codemt.source.files.walk`, the docstring writer's too: it never leaves its
root through a linked folder, and leaves out folders that hold no one's own source. A
linked file leading out of the root is counted, not read; a folder that cannot be listed
is left out alone.
"""

from __future__ import annotations

import errno
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from codemt.mine.resolved import Limits, Repository, Skip, sorted_counts
from codemt.source.files import PYTHON_SUFFIXES, walk


def directory_repository(name: str, spec: str, root: Path, limits: Limits) -> Repository:
    """The repository `name` of the Python files under the resolved folder `root`."""
    found = walk_folder(root, limits.max_file_bytes)
    return Repository(
        name, spec, root, tuple(found.files), sorted_counts(found.skipped), tuple(found.left_out)
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
    found = Walk([], Counter(), [])

    def unlistable(error: OSError) -> None:
        folder = error.filename or root
        found.left_out.append(
            Skip(
                "unreadable_folder",
                f"{folder}: cannot list this folder ({error.strerror or error}); its files are "
                "left out, check its permissions",
            )
        )

    for folder, filenames in walk(root, on_error=unlistable):
        for filename in filenames:
            if filename.endswith(PYTHON_SUFFIXES):
                file_paths, file_skipped = single_file(folder / filename, root, max_file_bytes)
                found.files += file_paths
                found.skipped += file_skipped
    found.files.sort()
    return found


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
