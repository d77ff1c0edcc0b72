"""What `codemt mine` cannot read is skipped at the smallest unit (a folder, the damaged end
of an archive, a file, a jsonl row, a method), counted and listed with a reason; the rest of
the source is mined and the run finishes."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from codemt.cli import main
from codemt.corpus import iter_records
from codemt.mine.pipeline import mine
from codemt.mine.resolved import Repository
from codemt.mine.settings import MineSettings
from codemt.mine.sources import resolve
from codemt.source import reading

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


def test_symlink_loops_are_skipped_as_such_and_the_rest_mined(tmp_path):
    repo = tmp_path / "repo"
    write(repo / "mod.py", textwrap.dedent(GOOD))
    (repo / "a.py").symlink_to("b.py")
    (repo / "b.py").symlink_to("a.py")
    (repo / "self.py").symlink_to("self.py")
    (repo / "up").symlink_to("..")  # a linked folder: os.walk does not descend into it

    manifest = mine([str(repo)], tmp_path / "corpus", settings(tmp_path))

    counts = manifest["counts"]
    assert counts["files_seen"] == counts["files_parsed"] == 1
    assert counts["files_skipped:symlink_loop"] == 3
    assert manifest["dedup"]["methods_after"] == 2
    assert manifest["sources"][0]["failures"] == []


# --- archives ---------------------------------------------------------------------------------


def python_members(count: int) -> list[tuple[str, bytes]]:
    """`count` distinct small Python files for an sdist named pkg-1.0."""
    return [
        (f"pkg-1.0/pkg/m{i:03d}.py", f"def f{i}(x):\n    return x * {i} + {i**3}\n".encode())
        for i in range(count)
    ]


def tar_archive(path: Path, members: list[tuple[str, bytes]], mode: str) -> bytes:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def garble_header(data: bytes, member_index: int) -> bytes:
    """A plain tar whose `member_index`th header (each member: header + one data block) is
    overwritten with garbage, as a bad disk block would."""
    offset = member_index * 2 * tarfile.BLOCKSIZE
    return data[:offset] + b"\xff" * tarfile.BLOCKSIZE + data[offset + tarfile.BLOCKSIZE :]


@pytest.mark.parametrize(
    ("filename", "mode", "damage"),
    [
        ("pkg-1.0.tar.gz", "w:gz", lambda data: data[: len(data) // 2]),
        ("pkg-1.0.tar.xz", "w:xz", lambda data: data[: len(data) // 2]),
        ("pkg-1.0.tar", "w", lambda data: data[: len(data) // 2 + 100]),  # cut inside a header
        ("pkg-1.0.tar", "w", lambda data: data[: 2 * tarfile.BLOCKSIZE * 150]),  # no end marker
        ("pkg-1.0.tar", "w", lambda data: garble_header(data, 120)),
    ],
    ids=["tar.gz cut", "tar.xz cut", "tar cut in a header", "tar cut between members", "garbled"],
)
def test_a_damaged_tar_keeps_the_members_before_the_damage(tmp_path, filename, mode, damage):
    members = python_members(200)
    archive = tmp_path / "downloads" / filename
    archive.parent.mkdir()
    archive.write_bytes(damage(tar_archive(tmp_path / filename, members, mode)))

    (repo,) = resolve(str(archive), tmp_path / "cache")
    (again,) = resolve(str(archive), tmp_path / "cache")  # from the extraction cache

    assert isinstance(repo, Repository) and again == repo
    kept = {file.relative_to(repo.root.parent).as_posix(): file for file in repo.files}
    assert 50 < len(kept) < 200
    by_name = dict(members)
    assert all(file.read_bytes() == by_name[name] for name, file in kept.items())  # none cut
    (skip,) = repo.left_out
    assert skip.reason == "damaged_archive" and "damaged" in skip.message


def test_mining_a_truncated_tar_gz_warns_once_and_keeps_its_first_methods(tmp_path, capsys):
    archive = tmp_path / "pkg-1.0.tar.gz"
    data = tar_archive(archive, python_members(200), "w:gz")
    archive.write_bytes(data[: len(data) // 2])

    manifest = mine([str(archive)], tmp_path / "corpus", settings(tmp_path))

    counts = manifest["counts"]
    assert 50 < counts["files_parsed"] == counts["methods"] < 200
    assert counts["parts_skipped:damaged_archive"] == 1
    assert manifest["sources"][0]["failures"] == []
    assert [s["reason"] for s in skipped_of(manifest)] == ["parts_skipped:damaged_archive"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and str(archive) in warnings[0]


def test_a_zip_member_that_cannot_be_read_is_skipped_alone(tmp_path):
    archive = tmp_path / "snapshot.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for name, data in python_members(3):
            zip_file.writestr(name, data * 20)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zip_file:
        damaged = zip_file.infolist()[1]
    start = damaged.header_offset + 30 + len(damaged.filename)  # its compressed bytes
    data[start + 5 : start + 15] = bytes(10)
    archive.write_bytes(bytes(data))

    (repo,) = resolve(str(archive), tmp_path / "cache")

    assert [file.name for file in repo.files] == ["m000.py", "m002.py"]
    assert dict(repo.skipped) == {"damaged_member": 1}


# --- text UTF-8 cannot hold -------------------------------------------------------------------


def test_names_that_are_not_utf8_are_written_escaped(tmp_path):
    repo = tmp_path / os.fsdecode(b"r\xe9po")  # Latin-1 bytes: surrogate escapes in the str
    write(repo / os.fsdecode(b"caf\xe9.py"), textwrap.dedent(GOOD))

    manifest = mine([str(repo)], tmp_path / "corpus", settings(tmp_path))

    assert manifest["counts"]["files_parsed"] == 1
    records = list(iter_records(tmp_path / "corpus"))
    assert {(r["repo"], r["path"]) for r in records} == {("r\\xe9po", "caf\\xe9.py")}


def test_a_method_holding_a_lone_surrogate_is_skipped_with_a_reason(tmp_path):
    source = (
        textwrap.dedent(GOOD) + '\n\ndef lone():\n    """Half a pair: \\ud800."""\n    return 1\n'
    )
    path = write(tmp_path / "repo" / "mod.py", source)

    manifest = mine([str(path.parent)], tmp_path / "corpus", settings(tmp_path))

    assert manifest["counts"]["methods_skipped:lone_surrogate"] == 1
    assert {r["name"] for r in iter_records(tmp_path / "corpus")} == {"Stack.push", "undocumented"}
    (skip,) = skipped_of(manifest)
    assert skip["reason"] == "methods_skipped:lone_surrogate"
    assert f"{path}:16" in skip["message"] and "lone" in skip["message"]


def test_the_cli_report_prints_a_source_name_that_is_not_utf8(tmp_path, capsys):
    good = write(tmp_path / "repo" / "mod.py", textwrap.dedent(GOOD)).parent
    missing = str(tmp_path / os.fsdecode(b"gon\xe9"))
    out = tmp_path / "corpus"
    arguments = ["mine", str(good), missing, "--out", str(out), "--workers", "1", "--quiet"]

    assert main([*arguments, "--cache-dir", str(tmp_path / "cache")]) == 0

    assert "gon\\xe9" in capsys.readouterr().out


# --- jsonl rows -------------------------------------------------------------------------------


def jsonl_row(name: str, lineno: object = None) -> str:
    code = f'def {name}(x):\n    """Return x plus one, always."""\n    return x + 1\n'
    row = {"repo": "owner/project", "path": "mod.py", "func_name": name, "code": code}
    if lineno is not None:
        row["lineno"] = lineno
    return json.dumps(row)


def test_jsonl_rows_with_a_bad_lineno_are_skipped_and_named(tmp_path):
    bad = ["12", [3], 10**30, -3, 0, 2.5, True, {"line": 1}]
    rows = [jsonl_row("good", 7), jsonl_row("whole_float", 9.0), jsonl_row("no_lineno")]
    rows += [jsonl_row(f"bad{i}", lineno) for i, lineno in enumerate(bad)]
    path = write(tmp_path / "rows.jsonl", "\n".join(rows) + "\n")

    manifest = mine([str(path)], tmp_path / "corpus", settings(tmp_path))

    assert manifest["counts"]["rows_parsed"] == 3
    assert manifest["counts"]["rows_skipped:bad_lineno"] == len(bad)
    lines = {r["name"]: r["lineno"] for r in iter_records(tmp_path / "corpus")}
    assert lines == {"good": 7, "whole_float": 9, "no_lineno": 1}
    skipped = skipped_of(manifest)
    assert {s["reason"] for s in skipped} == {"rows_skipped:bad_lineno"}
    assert [s["message"].split(": ")[0] for s in skipped] == [
        f"{path}:{number}" for number in range(4, 4 + len(bad))
    ]
    assert "lineno '12'" in skipped[0]["message"]


def test_a_truncated_jsonl_gz_keeps_the_rows_before_the_damage(tmp_path, capsys):
    path = tmp_path / "rows.jsonl.gz"
    rows = "".join(jsonl_row(f"f{i}", i + 1) + "\n" for i in range(400)).encode()
    data = gzip.compress(rows)
    path.write_bytes(data[: len(data) // 2])

    manifest = mine([str(path)], tmp_path / "corpus", settings(tmp_path))

    counts = manifest["counts"]
    assert 50 < counts["rows_parsed"] < 400 and counts["parts_skipped:damaged_file"] == 1
    assert manifest["sources"][0]["failures"] == []
    (skip,) = [s for s in skipped_of(manifest) if s["reason"].startswith("parts_")]
    assert str(path) in skip["message"] and "damaged after line" in skip["message"]
    assert capsys.readouterr().err.count("damaged after line") == 1


# --- files too costly to parse ----------------------------------------------------------------


def test_a_file_over_the_parse_limit_is_skipped_without_parsing(tmp_path, monkeypatch):
    real_parse = reading._parse

    def parse(text: str) -> object:
        assert not text.startswith("VALUES"), "parsed a file over the token limit"
        return real_parse(text)

    monkeypatch.setattr(reading, "_parse", parse)
    repo = tmp_path / "repo"
    write(repo / "mod.py", textwrap.dedent(GOOD))
    big = write(repo / "generated.py", "VALUES = [\n" + "    1,\n" * 100_000 + "def broken(:\n")
    custom = settings(tmp_path, max_file_bytes=10**7, max_parse_tokens=50_000)

    manifest = mine([str(repo)], tmp_path / "corpus", custom)

    assert manifest["counts"]["files_skipped:too_many_tokens"] == 1
    assert manifest["counts"]["files_parsed"] == 1
    assert manifest["settings"]["max_parse_tokens"] == 50_000
    (skip,) = skipped_of(manifest)
    assert skip["message"].startswith(f"{big}: more than 50000 tokens")
