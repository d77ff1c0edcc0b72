"""`codemt.write.atomic.write_atomically`, the one way codemt replaces a user's file: each safety
property tested directly, each test able to fail."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest

from codemt.write import atomic as writing
from codemt.write.atomic import LEFTOVER_SECONDS, NotWritten, write_atomically

OLD = b"def f():\n    return 1\n"
NEW = b'def f():\n    """One."""\n    return 1\n'


@pytest.fixture
def file(tmp_path) -> Path:
    path = tmp_path / "m.py"
    path.write_bytes(OLD)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".codemt-tmp"))


def test_the_new_bytes_replace_the_old_and_nothing_is_left_beside(file):
    write_atomically(file, NEW)
    assert file.read_bytes() == NEW
    assert sorted(p.name for p in file.parent.iterdir()) == ["m.py"]


@pytest.mark.parametrize("mode", [0o644, 0o755, 0o600, 0o640, 0o444])
def test_the_permission_bits_are_kept(file, mode):
    file.chmod(mode)
    write_atomically(file, NEW)
    assert stat.S_IMODE(file.stat().st_mode) == mode and file.read_bytes() == NEW


def test_a_symlink_stays_a_link_and_its_target_is_rewritten(tmp_path, file):
    link = tmp_path / "link.py"
    link.symlink_to(file.name)
    write_atomically(link, NEW)
    assert link.is_symlink() and os.readlink(link) == file.name
    assert file.read_bytes() == NEW
    # The temporary file went beside the target, and nothing is left.
    assert leftovers(tmp_path) == []


def test_a_chain_of_links_rewrites_the_last_target(tmp_path, file):
    (tmp_path / "one.py").symlink_to("m.py")
    (tmp_path / "two.py").symlink_to("one.py")
    write_atomically(tmp_path / "two.py", NEW)
    assert (tmp_path / "two.py").is_symlink() and (tmp_path / "one.py").is_symlink()
    assert file.read_bytes() == NEW


def test_a_file_with_other_hard_links_is_refused_and_untouched(tmp_path, file):
    os.link(file, tmp_path / "other.py")
    with pytest.raises(NotWritten, match="2 hard links; replacing it would split them"):
        write_atomically(file, NEW)
    assert file.read_bytes() == OLD and (tmp_path / "other.py").read_bytes() == OLD
    assert os.stat(file).st_ino == os.stat(tmp_path / "other.py").st_ino
    assert leftovers(tmp_path) == []


def test_a_file_changed_since_it_was_read_is_not_written(file):
    file.write_bytes(OLD + b"# added by the user\n")
    with pytest.raises(NotWritten, match="changed since it was read"):
        write_atomically(file, NEW, expected=OLD)
    assert file.read_bytes() == OLD + b"# added by the user\n"
    assert leftovers(file.parent) == []
    write_atomically(file, NEW, expected=OLD + b"# added by the user\n")  # unchanged: written
    assert file.read_bytes() == NEW


class Stat:
    """A file's status as seen when it belongs to another user or group."""

    def __init__(self, real: os.stat_result, **changed: int) -> None:
        self.real, self.changed = real, changed

    def __getattr__(self, name):
        return self.changed.get(name, getattr(self.real, name))


def test_the_owner_is_given_back_to_the_temporary_file(file, monkeypatch):
    status = file.stat()
    given = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: given.append((path, uid, gid)))
    writing._keep_owner(str(file), file, Stat(status, st_uid=4321, st_gid=4322))
    assert given == [(str(file), 4321, 4322)]
    given.clear()
    writing._keep_owner(str(file), file, status)  # already the same owner: nothing to do
    assert given == []


def no_chown(*args):
    raise PermissionError("not permitted")


def test_an_owner_that_cannot_be_kept_is_refused(file, monkeypatch):
    status = file.stat()
    monkeypatch.setattr(os, "chown", no_chown)
    with pytest.raises(NotWritten, match=f"belongs to user {status.st_uid + 1}; rewriting"):
        writing._keep_owner(str(file), file, Stat(status, st_uid=status.st_uid + 1))
    with pytest.raises(NotWritten, match=f"belongs to group {status.st_gid + 1}, which cannot"):
        writing._keep_owner(str(file), file, Stat(status, st_gid=status.st_gid + 1))


def test_a_refused_owner_leaves_the_file_and_no_temporary_file(file, monkeypatch):
    real_stat = os.stat

    def foreign(path, *args, **kwargs):  # the temporary file looks like the writer's
        result = real_stat(path, *args, **kwargs)
        if str(path).endswith(".codemt-tmp"):
            return Stat(result, st_uid=result.st_uid + 1)
        return result

    monkeypatch.setattr(os, "stat", foreign)
    monkeypatch.setattr(os, "chown", no_chown)
    with pytest.raises(NotWritten, match=re.escape(f"{file} belongs to user")):
        write_atomically(file, NEW)
    monkeypatch.undo()
    assert file.read_bytes() == OLD and leftovers(file.parent) == []


@pytest.mark.parametrize("failing", ["fsync", "chmod", "replace"])
def test_a_failure_at_any_step_leaves_the_old_file_and_no_temporary_file(
    file, monkeypatch, failing
):
    def fail(*args, **kwargs):
        raise OSError(f"{failing} failed")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        write_atomically(file, NEW)
    monkeypatch.undo()
    assert file.read_bytes() == OLD and leftovers(file.parent) == []


def test_a_failure_after_the_temporary_file_is_gone_is_the_error_raised(file, monkeypatch):
    def lost(source, target):
        os.unlink(source)  # e.g. removed by another process meanwhile
        raise OSError("replace failed")

    monkeypatch.setattr(os, "replace", lost)
    with pytest.raises(OSError, match="replace failed"):
        write_atomically(file, NEW)
    monkeypatch.undo()
    assert file.read_bytes() == OLD and leftovers(file.parent) == []


def test_an_interrupt_mid_write_leaves_the_old_file_and_no_temporary_file(file, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(file, NEW)
    monkeypatch.undo()
    assert file.read_bytes() == OLD and leftovers(file.parent) == []


def test_the_data_is_on_disk_before_the_name_points_at_it(file, monkeypatch):
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b)))
    write_atomically(file, NEW)
    assert order == ["fsync", "replace"]


def test_the_temporary_file_is_hidden_beside_the_target_and_never_a_python_file(file, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(source, target):
        seen.append((Path(source), Path(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    write_atomically(file, NEW)
    [(temporary, target)] = seen
    assert target == file.resolve() and temporary.parent == file.resolve().parent
    assert temporary.name.startswith(".m.py.") and temporary.name.endswith(".codemt-tmp")


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(tmp_path, file):
    old = tmp_path / ".m.py.abc123.codemt-tmp"
    fresh = tmp_path / ".m.py.def456.codemt-tmp"
    other = tmp_path / ".n.py.abc123.codemt-tmp"  # another file's
    for path in (old, fresh, other):
        path.write_bytes(b"partial")
    age(old, LEFTOVER_SECONDS + 5)
    age(other, LEFTOVER_SECONDS + 5)
    age(fresh, LEFTOVER_SECONDS - 30)
    write_atomically(file, NEW)
    assert leftovers(tmp_path) == [fresh.name, other.name]
    assert file.read_bytes() == NEW


def test_a_leftover_exactly_as_old_as_the_limit_is_kept(tmp_path, file, monkeypatch):
    leftover = tmp_path / ".m.py.abc.codemt-tmp"
    leftover.write_bytes(b"partial")
    now = leftover.lstat().st_mtime + LEFTOVER_SECONDS
    monkeypatch.setattr(writing, "time", type("Clock", (), {"time": staticmethod(lambda: now)}))
    write_atomically(file, NEW)
    assert leftover.exists()  # "older than" the limit only
    monkeypatch.setattr(
        writing, "time", type("Clock", (), {"time": staticmethod(lambda: now + 0.01)})
    )
    write_atomically(file, OLD)
    assert not leftover.exists()


def test_leftovers_of_a_name_with_glob_characters_are_found(tmp_path):
    path = tmp_path / "m[1].py"
    path.write_bytes(OLD)
    old = tmp_path / ".m[1].py.abc.codemt-tmp"
    old.write_bytes(b"partial")
    age(old, LEFTOVER_SECONDS + 1)
    write_atomically(path, NEW)
    assert leftovers(tmp_path) == []


def test_a_leftover_that_cannot_be_removed_does_not_stop_the_write(tmp_path, file, monkeypatch):
    old = tmp_path / ".m.py.abc.codemt-tmp"
    old.write_bytes(b"partial")
    age(old, LEFTOVER_SECONDS + 1)
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self == old:
            raise PermissionError("busy")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    write_atomically(file, NEW)
    assert file.read_bytes() == NEW and old.exists()
