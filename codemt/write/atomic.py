"""Replacing a user's file safely: all at once, keeping what the file was, or not at all.

A temporary file beside the file receives the new bytes (flushed to disk), takes the
file's permission bits and owner, and replaces it with `os.replace` (atomic on POSIX and
Windows), so a reader or a crash only ever sees the old or the new file. Whatever would
lose something of the user's is refused with `NotWritten`, saying why: a file changed
since it was read, other hard links, an owner that cannot be kept.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
import time
from pathlib import Path


class NotWritten(OSError):
    """A file that is not rewritten because doing so would lose something of the user's."""


def write_atomically(path: Path, data: bytes, expected: bytes | None = None) -> None:
    """Replace a file's content at once: a temporary file beside it, then `os.replace`.

    The file keeps its permission bits and its owner; a symbolic link stays a link to the
    rewritten file. Refused (NotWritten, saying why) when the file has other hard links
    (replacing it would split them), when its owner cannot be kept (another user's file
    would become the writer's), or when `expected` is given and the file no longer holds
    it (it changed since it was read: writing would revert that change). If anything
    fails, the temporary file is removed and the old file is untouched.
    """
    target = path.resolve()
    status = target.stat()
    if status.st_nlink > 1:
        raise NotWritten(
            f"{path} has {status.st_nlink} hard links; replacing it would split them: not "
            f"written (apply the --diff output with patch instead)"
        )
    mode = stat.S_IMODE(status.st_mode)
    _remove_leftovers(target)
    # Hidden and not ending in .py: a temporary file is never taken for a source file.
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".codemt-tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the name points at it
        os.chmod(temp, mode)
        _keep_owner(temp, path, status)
        if expected is not None and target.read_bytes() != expected:
            raise NotWritten(f"{path} changed since it was read: not written (run again)")
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


# A temporary file older than this was left by a run that was killed mid-write (a live one
# replaces its temporary file within milliseconds).
LEFTOVER_SECONDS = 60


def _remove_leftovers(target: Path) -> None:
    """Delete the temporary files that killed runs left beside `target`."""
    now = time.time()
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.codemt-tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime > LEFTOVER_SECONDS:
                leftover.unlink()


def _keep_owner(temp: str, path: Path, status: os.stat_result) -> None:
    """Give the temporary file the owner and group of the file it replaces, or refuse."""
    new = os.stat(temp)
    if (new.st_uid, new.st_gid) == (status.st_uid, status.st_gid):
        return
    try:
        os.chown(temp, status.st_uid, status.st_gid)
    except PermissionError:
        if new.st_uid != status.st_uid:
            raise NotWritten(
                f"{path} belongs to user {status.st_uid}; rewriting it would make it yours: "
                f"not written"
            ) from None
        # The same owner, another group we are not in: the group cannot be kept. Group
        # permissions then apply to the writer's group, so say it rather than change it.
        raise NotWritten(
            f"{path} belongs to group {status.st_gid}, which cannot be kept: not written"
        ) from None
