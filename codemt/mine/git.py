"""Git repositories -> repositories: shallow clones kept in the cache, named after their URL.

    CACHE/git/<name>-<url hash>/   shallow clone, complete once .git/codemt-complete exists

Clones run with hooks off, never prompt for credentials and never fetch LFS objects. A local
working tree is named after its origin (host/owner/name), as its clone would be.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from codemt.mine.folders import directory_repository
from codemt.mine.resolved import Limits, Resolved, SourceFailure, move_into_place

GIT_SCHEMES = frozenset({"http", "https", "ssh", "git", "file", "git+ssh", "ssh+git"})

SCP_LIKE_URL = re.compile(r"^[\w.+-]+@(?P<host>[\w.-]+):(?P<path>.+)$")  # git@host:owner/name
_CLONE_COMPLETE = "codemt-complete"  # inside the clone's .git folder


def git_repository(spec: str, url: str, cache_dir: Path, limits: Limits) -> Resolved:
    """Shallow-clone `url` into the cache (or reuse an earlier clone) and walk it."""
    name = _name_from_url(url) or Path(urlsplit(url).path).name.removesuffix(".git")
    url_hash = hashlib.sha256(url.encode()).hexdigest()[:12]
    clone_dir = cache_dir / "git" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{url_hash}"
    if not (clone_dir / ".git" / _CLONE_COMPLETE).is_file():
        error = _clone(url, clone_dir, limits.clone_timeout)
        if error is not None:
            return SourceFailure(spec, "clone_failed", f"{name}: {error}")
    return directory_repository(name, spec, clone_dir.resolve(), limits)


def _clone(url: str, clone_dir: Path, timeout: float) -> str | None:
    """Clone into a temp folder renamed to `clone_dir`; on failure, what to tell the user."""
    is_local = urlsplit(url).scheme.lower() in ("file", "") and not SCP_LIKE_URL.match(url)
    command = ["git", "-c", "core.hooksPath=/dev/null"]
    if is_local:
        command += ["-c", "protocol.file.allow=always"]
    if clone_dir.exists():  # left by a run that stopped before marking it complete
        shutil.rmtree(clone_dir)
    clone_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=".clone-", dir=clone_dir.parent))
    command += ["clone", "--depth", "1", "--no-tags", "--single-branch"]
    command += ["--no-recurse-submodules", "--template=", "--", url, str(temp_dir)]
    try:
        subprocess.run(
            command,
            env=_git_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=True,
        )
    except FileNotFoundError:
        shutil.rmtree(temp_dir)
        return "git is not installed; install git or pass a local directory instead"
    except subprocess.TimeoutExpired:
        shutil.rmtree(temp_dir)
        return (
            f"git clone took longer than {timeout:g} s; raise the clone timeout, or clone "
            "it yourself and pass the folder"
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(temp_dir)
        return f"git clone failed: {_git_error_line(err.stderr)}; check the URL and your access"
    (temp_dir / ".git" / _CLONE_COMPLETE).touch()
    move_into_place(temp_dir, clone_dir)
    return None


def _git_environment() -> dict[str, str]:
    """The environment for git: never prompt for credentials, never fetch LFS objects."""
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",  # answers every credential question with an empty string
        SSH_ASKPASS="true",
        GCM_INTERACTIVE="never",
        GIT_LFS_SKIP_SMUDGE="1",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _git_error_line(stderr: str) -> str:
    """The line of git's stderr that says what went wrong (the last fatal/error line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (errors or lines or ["no error message"])[-1]


def _name_from_url(url: str) -> str | None:
    """host/owner/name for a remote git URL, without scheme, credentials, port or .git."""
    scp_like = SCP_LIKE_URL.match(url)
    if scp_like:
        host, path = scp_like["host"].lower(), scp_like["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme.lower() not in GIT_SCHEMES - {"file"} or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    return f"{host}/{path}" if path else None


def without_credentials(url: str) -> str:
    """`url` without the user name and password it may hold, for messages."""
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def is_bare_repository(path: Path) -> bool:
    """Whether the folder `path` is a bare git repository (cloned, not walked)."""
    return (
        (path / "HEAD").is_file()
        and (path / "objects").is_dir()
        and (path / "refs").is_dir()
        and not (path / ".git").exists()
    )


def local_directory_name(root: Path) -> str:
    """A git working tree is named after its origin (host/owner/name), other folders by name."""
    git_config = root / ".git" / "config"
    try:
        is_git_tree = git_config.is_file()
    except OSError:  # an unreadable .git folder: name the folder itself
        return root.name
    if is_git_tree:
        command = ["git", "config", "--file", str(git_config), "--get", "remote.origin.url"]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=30, env=_git_environment()
            )
        except (OSError, subprocess.SubprocessError):
            return root.name
        name = _name_from_url(result.stdout.strip()) if result.returncode == 0 else None
        if name:
            return name
    return root.name
