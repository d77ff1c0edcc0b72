"""The running interpreter -> repositories: `python:stdlib` and `python:site-packages`.

`python:stdlib` gives one repository per top-level module or package of the standard
library, `python:site-packages` one per installed distribution, read from the files its
RECORD lists.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

from codemt.mine.folders import Walk, single_file, walk_folder
from codemt.mine.resolved import (
    Limits,
    Repository,
    Resolved,
    SourceFailure,
    normalise,
    sorted_counts,
)
from codemt.source.files import PYTHON_SUFFIXES


def _stdlib_repositories(spec: str, limits: Limits) -> Iterator[Resolved]:
    """One repository per top-level module or package of the interpreter's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    # Only importable names: this leaves out site-packages, lib-dynload, config-3.x-..., etc.
    for entry in sorted(stdlib.iterdir()):
        if entry.is_dir() and entry.name.isidentifier() and entry.name != "__pycache__":
            walk = walk_folder(entry, limits.max_file_bytes)
            name = entry.name
        elif entry.name.endswith(PYTHON_SUFFIXES) and entry.stem.isidentifier():
            walk = Walk(*single_file(entry, stdlib, limits.max_file_bytes), [])
            name = entry.stem
        else:
            continue
        yield Repository(
            f"python/stdlib/{name}",
            spec,
            stdlib,
            tuple(walk.files),
            sorted_counts(walk.skipped),
            tuple(walk.left_out),
        )


def _site_package_repositories(spec: str, limits: Limits) -> Iterator[Resolved]:
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
        name = normalise(raw_name)
        if name in seen or name in limits.exclude_distributions:
            continue
        seen.add(name)  # the first one on sys.path wins, as it does for imports
        yield _distribution_repository(spec, distribution, name, site_dir, limits)


def _distribution_repository(
    spec: str, distribution: metadata.Distribution, name: str, site_dir: Path, limits: Limits
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
        file_paths, file_skipped = single_file(path, site_dir, limits.max_file_bytes)
        files += file_paths
        skipped += file_skipped
    return Repository(
        f"pypi/{name}", spec, site_dir, tuple(sorted(set(files))), sorted_counts(skipped)
    )


def _site_dirs() -> list[str]:
    """The interpreter's site-packages folders in sys.path order (not the working directory,
    where a project's own *.egg-info would otherwise pass for an installed distribution)."""
    site_dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        site_dirs.append(site.getusersitepackages())
    real_site_dirs = {os.path.realpath(folder) for folder in site_dirs}
    return [entry for entry in sys.path if entry and os.path.realpath(entry) in real_site_dirs]


INTERPRETER_SOURCES: dict[str, Callable[[str, Limits], Iterator[Resolved]]] = {
    "python:stdlib": _stdlib_repositories,
    "python:site-packages": _site_package_repositories,
}
