"""Archives (sdists, wheels, tarballs, zips) -> repositories: their Python files, extracted.

    CACHE/archives/<sha256[:16]>/   extracted .py/.pyw members + .codemt-extracted.json
                                    (root folder, skipped counts and damage, for reuse)

Members are extracted by hand, Python files only: links, devices and members that would
land outside the extraction folder are refused and counted, and limits on members and bytes
guard against archive bombs. Damage part way through a tar keeps the members before it; a
zip's damaged member is skipped alone.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from codemt.mine.folders import walk_folder
from codemt.mine.resolved import (
    Limits,
    Repository,
    Resolved,
    Skip,
    SourceFailure,
    move_into_place,
    normalise,
    sorted_counts,
)
from codemt.source.files import PYTHON_SUFFIXES

_SDIST_STEM = re.compile(r"^(?P<name>.+)-(?P<version>\d[^-]*)$")  # name-1.2.3
_EXTRACTED = ".codemt-extracted.json"  # next to an archive's extracted members


class _BadArchive(Exception):
    """An archive over the extraction limits (the message says which and what to do)."""


class _Damaged(Exception):
    """Reading an archive failed part way (the message says where); what came before is good."""


# Whatever a damaged or hostile archive makes tarfile, zipfile or the decompressors raise.
_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,  # zipfile: an encrypted member
    NotImplementedError,  # zipfile: an unsupported compression method
)


def archive_repository(
    spec: str, path: Path, suffix: str, cache_dir: Path, limits: Limits
) -> Resolved:
    """Extract the archive's Python files into the cache (or reuse them) and walk them."""
    extract_dir = cache_dir / "archives" / _sha256(path)[:16]
    manifest = extract_dir / _EXTRACTED
    if not manifest.is_file():
        if extract_dir.exists():  # left by a run that stopped before writing the manifest
            shutil.rmtree(extract_dir)
        extract_dir.parent.mkdir(parents=True, exist_ok=True)
        temp_dir = Path(tempfile.mkdtemp(prefix=".extract-", dir=extract_dir.parent))
        try:
            extraction = _ARCHIVE_EXTRACTORS[suffix](path, temp_dir, limits)
        except _BadArchive as err:
            shutil.rmtree(temp_dir)
            return SourceFailure(spec, "bad_archive", f"{spec}: {err}")
        except _ARCHIVE_ERRORS as err:
            shutil.rmtree(temp_dir)
            return SourceFailure(
                spec,
                "bad_archive",
                f"{spec}: cannot read the archive ({err}); check that it is a complete "
                f"{suffix} file, e.g. download it again",
            )
        summary = {
            "root": extraction.root_folder(),
            "skipped": extraction.skipped,
            "damage": extraction.damage,
        }
        (temp_dir / _EXTRACTED).write_text(json.dumps(summary), encoding="utf-8")
        move_into_place(temp_dir, extract_dir)
    summary = json.loads(manifest.read_text(encoding="utf-8"))
    skipped = Counter(summary["skipped"])
    root = (extract_dir / summary["root"]).resolve()
    if not root.is_dir():  # its top folder held no Python file, so none was extracted there
        root = extract_dir.resolve()
    walk = walk_folder(root, limits.max_file_bytes)
    if summary.get("damage"):
        walk.left_out.insert(0, Skip("damaged_archive", summary["damage"]))
    name = _archive_name(path.name, suffix)
    return Repository(
        name,
        spec,
        root,
        tuple(walk.files),
        sorted_counts(skipped + walk.skipped),
        tuple(walk.left_out),
    )


class _Extraction:
    """Writes the Python members of one archive under `dest`, within the limits."""

    def __init__(self, dest: Path, limits: Limits) -> None:
        self.dest = dest
        self.limits = limits
        self.members = 0
        self.total_bytes = 0
        self.skipped: Counter[str] = Counter()
        self.top_level: set[tuple[str, bool]] = set()  # (first path part, is a folder)
        self.damage: str | None = None  # where and why reading stopped part way, if it did

    def stop_at(self, damage: _Damaged) -> None:
        """Record that the rest of the archive cannot be read; the members so far are kept."""
        self.damage = (
            f"archive damaged {damage}; its Python files before the damage are mined, the "
            "rest is left out (download it again to mine it whole)"
        )

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise _BadArchive(
                f"more than {self.limits.max_archive_members} members, which looks like an "
                "archive bomb; raise the member limit if you trust this archive"
            )

    def refuse(self) -> None:
        self.skipped["unsafe_member"] += 1

    def add_folder(self, name: str) -> None:
        relative = _safe_member_path(name)
        if relative is not None:
            self.top_level.add((relative.parts[0], True))

    def add(self, name: str, size: int, open_member: Callable[[], IO[bytes]]) -> None:
        """Write member `name` if it is a safe Python file path; `size` is from its header."""
        relative = _safe_member_path(name)
        if relative is None:
            self.refuse()
            return
        self.top_level.add((relative.parts[0], len(relative.parts) > 1))
        if not relative.name.endswith(PYTHON_SUFFIXES):
            return
        if size > self.limits.max_file_bytes:
            self.skipped["too_large"] += 1
            return
        self.total_bytes += size
        if self.total_bytes > self.limits.max_archive_bytes:
            raise _BadArchive(
                f"its Python files hold more than {self.limits.max_archive_bytes} bytes, which "
                "looks like an archive bomb; raise the size limit if you trust this archive"
            )
        # Read whole before writing, so that damage leaves no cut file behind; tarfile and
        # zipfile stop reading at the size in the member's header.
        try:
            with open_member() as member:
                data = member.read()
        except _ARCHIVE_ERRORS as err:
            raise _Damaged(f"in member {self.members} ({name}): {err}") from None
        target = self.dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def root_folder(self) -> str:
        """The one folder holding every member (an sdist's name-1.2.3/), else ""."""
        if len(self.top_level) == 1:
            ((name, is_folder),) = self.top_level
            if is_folder:
                return name
        return ""


def _extract_tar(archive: Path, dest: Path, limits: Limits) -> _Extraction:
    """A tar is read in order: damage part way stops it, keeping the members before."""
    extraction = _Extraction(dest, limits)
    with tarfile.open(archive, "r:*", tarinfo=_StrictTarInfo) as tar:
        try:
            for member in _tar_members(tar, extraction):
                if member.isdir():
                    extraction.add_folder(member.name)
                    continue
                if not member.isreg() or not _passes_data_filter(member, dest):
                    extraction.refuse()  # links, devices and fifos: never extracted
                    continue
                extraction.add(member.name, member.size, partial(tar.extractfile, member))
        except _Damaged as damage:
            extraction.stop_at(damage)
    return extraction


def _tar_members(tar: tarfile.TarFile, extraction: _Extraction) -> Iterator[tarfile.TarInfo]:
    """The members of `tar`, each counted; raises _Damaged where a header cannot be read."""
    members = iter(tar)
    last = "the start"
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except _ARCHIVE_ERRORS as err:
            raise _Damaged(f"after member {extraction.members} ({last}): {err}") from None
        extraction.count_member()
        last = member.name
        yield member


class _StrictTarInfo(tarfile.TarInfo):
    """Makes tarfile raise at a cut or garbled member header, where it would end quietly as
    if the archive ended there (it does so for any header but the first)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise  # a block of zeros: the end-of-archive marker
        except tarfile.EmptyHeaderError:
            raise tarfile.ReadError("the file ends without the end-of-archive marker") from None
        except tarfile.HeaderError as err:
            raise tarfile.ReadError(f"bad member header ({err})") from None


def _extract_zip(archive: Path, dest: Path, limits: Limits) -> _Extraction:
    """A zip's members are read one by one from its directory: a damaged one is skipped."""
    extraction = _Extraction(dest, limits)
    with zipfile.ZipFile(archive) as zip_file:
        for info in zip_file.infolist():
            extraction.count_member()
            if info.is_dir():
                extraction.add_folder(info.filename)
                continue
            # Unix file type in the high word; 0 when the archive was made without one.
            if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
                extraction.refuse()  # a symlink or device stored by a unix zip tool
                continue
            try:
                extraction.add(info.filename, info.file_size, partial(zip_file.open, info))
            except _Damaged:
                extraction.skipped["damaged_member"] += 1
    return extraction


_ARCHIVE_EXTRACTORS: dict[str, Callable[[Path, Path, Limits], _Extraction]] = {
    ".tar.gz": _extract_tar,
    ".tgz": _extract_tar,
    ".tar.bz2": _extract_tar,
    ".tar.xz": _extract_tar,
    ".tar": _extract_tar,
    ".zip": _extract_zip,
    ".whl": _extract_zip,
}


def archive_suffix(filename: str) -> str | None:
    """The archive suffix `filename` ends with (".tar.gz", ".whl", ...), or None."""
    lowered = filename.lower()
    return next((suffix for suffix in _ARCHIVE_EXTRACTORS if lowered.endswith(suffix)), None)


def _safe_member_path(name: str) -> PurePosixPath | None:
    """The member's path relative to the extraction folder, or None if it could escape it."""
    posix = name.replace("\\", "/")
    if "\x00" in posix or posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return None
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _passes_data_filter(member: tarfile.TarInfo, dest: Path) -> bool:
    """Python's own "data" extraction filter, a second opinion on our checks (3.10.12+)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return True
    try:
        data_filter(member, str(dest))
    except tarfile.FilterError:
        return False
    return True


def _archive_name(filename: str, suffix: str) -> str:
    """pypi/<name> for wheels and sdists (name-1.2.3.tar.gz), else the archive's stem."""
    stem = filename[: -len(suffix)]
    if suffix == ".whl":
        return f"pypi/{normalise(stem.split('-')[0])}"
    sdist = _SDIST_STEM.match(stem)
    return f"pypi/{normalise(sdist['name'])}" if sdist else stem


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(partial(file.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
