"""Source specs -> repositories: directories, list files, archives, git, the interpreter."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from codemt.mine.resolved import JsonlSource, Repository, SourceFailure
from codemt.mine.sources import expand_sources, resolve

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def write(path: Path, text: str = "def f():\n    return 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def only(items: list) -> Repository | JsonlSource | SourceFailure:
    assert len(items) == 1, items
    return items[0]


def relative_files(repo: Repository) -> list[str]:
    return [file.relative_to(repo.root).as_posix() for file in repo.files]


def git(*args: str, cwd: Path) -> None:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


# --- local directories and files ---------------------------------------------------------


def test_directory_walk_skips_tooling_dirs_links_out_and_large_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / "pkg" / "a.py")
    write(project / "pkg" / "b.pyw")
    write(project / "pkg" / "notes.txt")
    write(project / "pkg" / "big.py", "x = 1\n" * 100)
    for skipped in [".git", ".tox", "__pycache__", "node_modules", "build", "dist", "x.egg-info"]:
        write(project / skipped / "skipped.py")
    write(project / "env" / "pyvenv.cfg", "home = /usr\n")
    write(project / "env" / "lib" / "skipped.py")
    (project / "inside.py").symlink_to(project / "pkg" / "a.py")
    (project / "outside.py").symlink_to(write(tmp_path / "secret.py"))
    (project / "linked_dir").symlink_to(tmp_path, target_is_directory=True)

    repo = only(list(resolve(str(project), tmp_path / "cache", max_file_bytes=100)))

    assert isinstance(repo, Repository)
    assert repo.name == "project"
    assert repo.source == str(project)
    assert repo.root == project.resolve()
    assert relative_files(repo) == ["inside.py", "pkg/a.py", "pkg/b.pyw"]
    assert dict(repo.skipped) == {"too_large": 1, "symlink_outside": 1}


@needs_git
@pytest.mark.parametrize(
    "origin",
    ["https://user:token@GitHub.com:443/psf/requests.git", "git@github.com:psf/requests.git"],
)
def test_git_working_tree_is_named_after_its_origin(tmp_path: Path, origin: str) -> None:
    write(tmp_path / "checkout" / "api.py")
    git("init", "-q", cwd=tmp_path / "checkout")
    git("remote", "add", "origin", origin, cwd=tmp_path / "checkout")

    repo = only(list(resolve(str(tmp_path / "checkout"), tmp_path / "cache")))

    assert repo.name == "github.com/psf/requests"
    assert relative_files(repo) == ["api.py"]


def test_single_python_file(tmp_path: Path) -> None:
    script = write(tmp_path / "tools" / "script.py")

    repo = only(list(resolve(str(script), tmp_path / "cache")))

    assert repo == Repository("tools/script.py", str(script), script.parent, (script,))


def test_jsonl_files_are_passed_to_the_miner(tmp_path: Path) -> None:
    rows = write(tmp_path / "train.jsonl.gz", "")
    assert only(list(resolve(str(rows), tmp_path / "cache"))) == JsonlSource(str(rows), rows)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no/such/place", "not_found"),
        ("python:everything", "unsupported"),
        ("https://example.com/pkg-1.0.tar.gz", "unsupported"),
        ("ftp://example.com/repo", "unsupported"),
    ],
)
def test_unusable_specs_fail_with_a_reason(tmp_path: Path, spec: str, reason: str) -> None:
    failure = only(list(resolve(spec, tmp_path / "cache")))
    assert isinstance(failure, SourceFailure)
    assert (failure.source, failure.reason) == (spec, reason)
    assert failure.message.startswith(spec)


# --- list files ---------------------------------------------------------------------------


def test_list_files_expand_in_order_with_nesting_and_shorthands(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "a.py")
    write(tmp_path / "owner" / "local" / "b.py")  # owner/name that exists stays a path
    write(
        tmp_path / "lists" / "main.txt",
        "# corpus\n\n../proj\n  nested.txt  \npallets/flask\n../owner/local\n"
        "python:stdlib\ngit@github.com:psf/requests.git\n",
    )
    write(tmp_path / "lists" / "nested.txt", "# again\n../proj\ndata/x.jsonl\nmissing.py\n")

    specs = expand_sources([str(tmp_path / "lists" / "main.txt"), "python:stdlib", "extra"])

    assert specs == [
        str(tmp_path / "proj"),
        str(tmp_path / "lists" / "data" / "x.jsonl"),
        str(tmp_path / "lists" / "missing.py"),
        "https://github.com/pallets/flask",
        str(tmp_path / "owner" / "local"),
        "python:stdlib",
        "git@github.com:psf/requests.git",
        "extra",
    ]


def test_list_file_cycles_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "b.txt\n")
    write(tmp_path / "b.txt", "# back to the start\na.txt\n")

    with pytest.raises(ValueError, match=r"b\.txt:2: .*cycle"):
        expand_sources([str(tmp_path / "a.txt")])
    failure = only(list(resolve(str(tmp_path / "a.txt"), tmp_path / "cache")))
    assert failure.reason == "bad_list"


def test_resolve_expands_a_list_file_itself(tmp_path: Path) -> None:
    write(tmp_path / "one" / "a.py")
    write(tmp_path / "sources.txt", "one\nnowhere\n")

    items = list(resolve(str(tmp_path / "sources.txt"), tmp_path / "cache"))

    assert [item.source for item in items] == [str(tmp_path / "one"), str(tmp_path / "nowhere")]
    assert [type(item) for item in items] == [Repository, SourceFailure]


# --- archives -------------------------------------------------------------------------------


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field, value in fields.items():
        setattr(info, field, value)
    tar.addfile(info, io.BytesIO(data))


def assert_nothing_written_outside(tmp_path: Path, cache: Path) -> None:
    assert not (tmp_path / "evil.py").exists()
    assert not Path("/abs.py").exists()
    for path in cache.rglob("*"):
        assert not path.is_symlink()
        assert stat.S_ISREG(path.lstat().st_mode) or path.is_dir()


def test_tar_archive_extracts_only_safe_python_members(tmp_path: Path) -> None:
    archive = tmp_path / "dl" / "Demo_Pkg-1.2.0.tar.gz"
    archive.parent.mkdir()
    good = b"def good():\n    return 1\n"
    with tarfile.open(archive, "w:gz") as tar:
        add_tar_member(tar, "Demo_Pkg-1.2.0/demo/good.py", good)
        add_tar_member(tar, "Demo_Pkg-1.2.0/README.txt", b"docs")
        add_tar_member(tar, "../evil.py", b"import os")
        add_tar_member(tar, "/abs.py", b"import os")
        link = {"linkname": "../../../evil.py"}
        add_tar_member(tar, "Demo_Pkg-1.2.0/link.py", type=tarfile.SYMTYPE, **link)
        add_tar_member(tar, "Demo_Pkg-1.2.0/hard.py", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        add_tar_member(tar, "Demo_Pkg-1.2.0/pipe.py", type=tarfile.FIFOTYPE)
    cache = tmp_path / "cache"

    first = only(list(resolve(str(archive), cache)))
    again = only(list(resolve(str(archive), cache)))

    assert isinstance(first, Repository)
    assert first == again  # reused from the cache, counts included
    assert first.name == "pypi/demo-pkg"
    assert first.root.name == "Demo_Pkg-1.2.0"
    assert first.root.is_relative_to((cache / "archives").resolve())
    assert relative_files(first) == ["demo/good.py"]
    assert first.files[0].read_bytes() == good
    assert dict(first.skipped) == {"unsafe_member": 5}
    assert_nothing_written_outside(tmp_path, cache)


def test_zip_archive_refuses_traversal_and_links(tmp_path: Path) -> None:
    archive = tmp_path / "snapshot.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("pkg/good.py", "x = 1\n")
        zip_file.writestr("top.py", "y = 2\n")
        zip_file.writestr("../evil.py", "import os\n")
        zip_file.writestr(zipfile.ZipInfo("/abs.py"), "import os\n")
        zip_file.writestr("C:/drive.py", "import os\n")
        link = zipfile.ZipInfo("pkg/link.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zip_file.writestr(link, "../../evil.py")
    cache = tmp_path / "cache"

    repo = only(list(resolve(str(archive), cache)))

    assert repo.name == "snapshot"
    assert relative_files(repo) == ["pkg/good.py", "top.py"]  # two top-level entries: no descent
    assert dict(repo.skipped) == {"unsafe_member": 4}
    assert_nothing_written_outside(tmp_path, cache)


def test_wheel_is_named_after_its_distribution(tmp_path: Path) -> None:
    wheel = tmp_path / "My_Package-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zip_file:
        zip_file.writestr("my_package/__init__.py", "VERSION = 2\n")
        zip_file.writestr("my_package-2.0.dist-info/RECORD", "")  # not extracted, still counts

    repo = only(list(resolve(str(wheel), tmp_path / "cache")))

    assert repo.name == "pypi/my-package"
    assert relative_files(repo) == ["my_package/__init__.py"]


@pytest.mark.parametrize("filename", ["broken.tar.gz", "broken.zip", "broken.whl", "b.tar.xz"])
def test_corrupt_archive_is_a_failure(tmp_path: Path, filename: str) -> None:
    archive = write(tmp_path / filename, "this is not an archive\n" * 10)

    failure = only(list(resolve(str(archive), tmp_path / "cache")))

    assert failure.reason == "bad_archive"
    assert not (tmp_path / "cache" / "archives").exists() or not any(
        (tmp_path / "cache" / "archives").iterdir()
    )


@pytest.mark.parametrize(
    ("limit", "message"),
    [({"max_archive_members": 2}, "members"), ({"max_archive_bytes": 10}, "bytes")],
)
def test_archive_bombs_are_refused(tmp_path: Path, limit: dict, message: str) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        for index in range(3):
            zip_file.writestr(f"m{index}.py", "x = 1\n")

    failure = only(list(resolve(str(archive), tmp_path / "cache", **limit)))

    assert failure.reason == "bad_archive"
    assert message in failure.message


# --- git ------------------------------------------------------------------------------------


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A git repository with one commit of Python files."""
    origin = tmp_path / "upstream"
    write(origin / "lib" / "core.py")
    write(origin / "setup.py")
    git("init", "-q", cwd=origin)
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "initial", cwd=origin)
    return origin


@needs_git
def test_clone_by_file_url_and_reuse(tmp_path: Path, upstream: Path) -> None:
    cache = tmp_path / "cache"

    repo = only(list(resolve(upstream.as_uri(), cache)))
    (upstream / "setup.py").unlink()  # a reused clone does not see later changes
    again = only(list(resolve(upstream.as_uri(), cache)))

    assert isinstance(repo, Repository)
    assert repo.name == "upstream"
    assert repo.root.is_relative_to((cache / "git").resolve())
    assert relative_files(repo) == ["lib/core.py", "setup.py"]
    assert again == repo


@needs_git
def test_clone_of_a_bare_repository_path(tmp_path: Path, upstream: Path) -> None:
    git("clone", "-q", "--bare", str(upstream), str(tmp_path / "mirror.git"), cwd=tmp_path)

    repo = only(list(resolve(str(tmp_path / "mirror.git"), tmp_path / "cache")))

    assert repo.name == "mirror"
    assert relative_files(repo) == ["lib/core.py", "setup.py"]


@needs_git
def test_failed_clone_reports_gits_error(tmp_path: Path) -> None:
    url = (tmp_path / "missing.git").as_uri()

    failure = only(list(resolve(url, tmp_path / "cache")))

    assert failure.reason == "clone_failed"
    assert "fatal:" in failure.message
    assert os.listdir(tmp_path / "cache" / "git") == []  # the temp clone is removed


# --- the running interpreter ----------------------------------------------------------------


def test_stdlib_is_one_repository_per_top_level_module(tmp_path: Path) -> None:
    repos = {repo.name: repo for repo in resolve("python:stdlib", tmp_path / "cache")}

    assert len(repos) > 100
    assert {"python/stdlib/os", "python/stdlib/asyncio"} <= repos.keys()
    assert "json/__init__.py" in relative_files(repos["python/stdlib/json"])
    files = [file for repo in repos.values() for file in repo.files]
    assert not any(part in ("site-packages", "dist-packages") for f in files for part in f.parts)
    assert all(repo.source == "python:stdlib" for repo in repos.values())


@pytest.mark.slow
def test_site_packages_are_one_repository_per_distribution(tmp_path: Path) -> None:
    repos = {
        item.name: item
        for item in resolve("python:site-packages", tmp_path / "cache")
        if isinstance(item, Repository)
    }

    assert "pypi/numpy" in repos
    assert "pypi/codemt" not in repos  # the tool itself is never mined by default
    numpy = repos["pypi/numpy"]
    assert "numpy/__init__.py" in relative_files(numpy)
    assert all(file.is_relative_to(repo.root) for repo in repos.values() for file in repo.files)


@pytest.mark.slow
def test_site_packages_exclusions_use_normalised_names(tmp_path: Path) -> None:
    excluded = ["NumPy", "PyYAML"]
    items = resolve("python:site-packages", tmp_path / "cache", exclude_distributions=excluded)
    names = {item.name for item in items if isinstance(item, Repository)}
    assert names and not names & {"pypi/numpy", "pypi/pyyaml"}


def test_a_list_line_that_cannot_name_a_file_is_a_failed_source(tmp_path: Path) -> None:
    """A text file given as a source is read as a list; a line too long for a file name
    (a licence's paragraph, say) becomes a source that fails, not a crash of the run."""
    write(tmp_path / "one" / "a.py")
    long_line = "text: " + "Licensed under the Apache License " * 200
    write(tmp_path / "THIRDPARTY.yaml", f"one\n{long_line}\n{'a/' + 'b' * 5000}\n")
    # (the last is no GitHub name either: too long for one)

    specs = expand_sources([str(tmp_path / "THIRDPARTY.yaml")])
    assert specs[0] == str(tmp_path / "one") and len(specs) == 3
    items = [item for spec in specs for item in resolve(spec, tmp_path / "cache")]
    assert [type(item) for item in items] == [Repository, SourceFailure, SourceFailure]
    assert [item.reason for item in items[1:]] == ["not_found", "not_found"]
