"""What `codemt mine` cannot read is skipped at the smallest unit (a folder, the damaged end
of an archive, a file, a jsonl row, a method), counted and listed with a reason; the rest of
the source is mined and the run finishes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from codemt.mine.pipeline import MineSettings, mine
from codemt.mine.sources import Repository, resolve

GOOD = '''
class Stack:
    """A last-in first-out stack."""

    def push(self, item):
        """Push an item on top of the stack."""
        self.items.append(item)
        self.size += 1


def undocumented(a, b):
    c = a * b
    return c + 1
'''


def settings(tmp_path: Path, **kwargs: object) -> MineSettings:
    return MineSettings(workers=1, progress=False, cache_dir=tmp_path / "cache", **kwargs)


def write(path: Path, text: str = "def f():\n    return 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def skipped_of(manifest: dict) -> list[dict]:
    return [skip for source in manifest["sources"] for skip in source["skipped"]]


# --- folders ----------------------------------------------------------------------------------


def deny_access(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `folder` unreadable as `chmod 000` does for any user but root: listing it and
    looking up anything inside it raise PermissionError."""
    real_scandir, real_stat, real_lstat = os.scandir, os.stat, os.lstat

    def inside(path: object) -> bool:
        return isinstance(path, str | os.PathLike) and Path(path).is_relative_to(folder)

    def denied(path: object) -> PermissionError:
        return PermissionError(13, "Permission denied", os.fspath(path))

    def scandir(path: object = ".") -> object:
        if inside(path):
            raise denied(path)
        return real_scandir(path)

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if inside(path) and Path(path) != folder:
            raise denied(path)
        return real_stat(path, *args, **kwargs)

    def lstat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if inside(path) and Path(path) != folder:
            raise denied(path)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "lstat", lstat)


def test_an_unreadable_folder_is_left_out_alone(tmp_path, monkeypatch):
    project = tmp_path / "project"
    write(project / "top.py")
    write(project / "pkg" / "a.py")
    write(project / "locked" / "hidden.py")
    write(project / "locked" / "deeper" / "more.py")
    deny_access(monkeypatch, (project / "locked").resolve())

    (repo,) = resolve(str(project), tmp_path / "cache")

    assert isinstance(repo, Repository)
    assert [f.relative_to(repo.root).as_posix() for f in repo.files] == ["pkg/a.py", "top.py"]
    (skip,) = repo.left_out
    assert skip.reason == "unreadable_folder"
    assert str(project / "locked") in skip.message and "Permission denied" in skip.message


def test_mining_records_an_unreadable_folder_and_mines_the_rest(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    write(repo / "mod.py", textwrap.dedent(GOOD))
    locked = write(repo / "locked" / "hidden.py").parent
    deny_access(monkeypatch, locked.resolve())

    manifest = mine([str(repo)], tmp_path / "corpus", settings(tmp_path))

    counts = manifest["counts"]
    assert counts["files_seen"] == counts["files_parsed"] == 1
    assert counts["parts_skipped:unreadable_folder"] == 1
    assert manifest["dedup"]["methods_after"] == 2
    assert manifest["sources"][0]["failures"] == []
    (skip,) = skipped_of(manifest)
    assert skip["reason"] == "parts_skipped:unreadable_folder" and str(locked) in skip["message"]
    assert capsys.readouterr().err.count(str(locked)) == 1
