"""The one walk of a project's folders: what it enters, in which order, and what it leaves."""

import os
from pathlib import Path

import pytest

from codemt.source.files import ENVIRONMENT_DIR_NAMES, SKIPPED_DIR_NAMES, is_skipped_folder, walk


def tree(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")
    return root


def found(root: Path, **options) -> list[str]:
    return [
        (folder / name).relative_to(root).as_posix()
        for folder, names in walk(root, **options)
        for name in names
    ]


def test_folders_of_no_ones_own_source_are_left_out(tmp_path):
    root = tree(
        tmp_path,
        [
            "b.py",
            "a.py",
            "pkg/m.py",
            ".git/hooks/h.py",
            "build/lib/x.py",
            "pkg.egg-info/y.py",
            "env1/lib/z.py",
            "env1/pyvenv.cfg",
            "conda/conda-meta/history",
            "conda/w.py",
            "venv/v.py",
        ],
    )
    assert found(root) == ["a.py", "b.py", "pkg/m.py", "venv/v.py"]
    # The docstring writer leaves environments by name out too.
    assert found(root, skipped_names=SKIPPED_DIR_NAMES | ENVIRONMENT_DIR_NAMES) == [
        "a.py",
        "b.py",
        "pkg/m.py",
    ]


def test_a_linked_folder_is_not_entered(tmp_path):
    root = tree(tmp_path / "project", ["a.py"])
    outside = tree(tmp_path / "outside", ["secret.py"])
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert found(root) == ["a.py"]


def test_the_caller_rules_on_subfolders_after_seeing_their_parent(tmp_path):
    root = tree(tmp_path, ["a.py", "keep/k.py", "drop/d.py", "keep/drop/dd.py"])
    seen: list[Path] = []

    def keep(folder: Path) -> bool:
        assert folder.parent in seen  # the parent was yielded (and read) first
        return folder.name != "drop"

    for folder, _ in walk(root, keep_folder=keep):
        seen.append(folder)
    assert [f.relative_to(root).as_posix() for f in seen] == [".", "keep"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists every folder")
def test_a_folder_that_cannot_be_listed_is_reported_and_left_out(tmp_path):
    root = tree(tmp_path, ["a.py", "locked/l.py", "open/o.py"])
    (root / "locked").chmod(0)
    errors: list[OSError] = []
    try:
        assert found(root, on_error=errors.append) == ["a.py", "open/o.py"]
    finally:
        (root / "locked").chmod(0o755)
    assert [Path(e.filename).name for e in errors] == ["locked"]


def test_a_folder_that_cannot_be_looked_into_is_not_called_an_environment(tmp_path):
    assert not is_skipped_folder(tmp_path / "missing")
    assert is_skipped_folder(tmp_path / ".hidden") and is_skipped_folder(tmp_path / "x.egg-info")
