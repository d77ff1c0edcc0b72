"""Finding a project's Python files: one walk and one rule for the folders it leaves out.

Mining (`codemt.mine.folders`), writing docstrings (`codemt.write.docstring`) and the
project memory all walk folders with `walk`: it never enters a linked folder (so it never
leaves its root through one), nor a folder that holds no one's own source
(`is_skipped_folder`: hidden, build output, virtual and conda environments), nor one the
caller's own rule refuses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

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
