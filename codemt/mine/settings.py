"""What decides the corpus `codemt mine` produces: its settings and CodeSearchNet's filters.

`MineSettings.fingerprint` digests the settings that change staged records, so that a rerun
with other settings re-mines every source instead of mixing records of both.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codemt import __version__
from codemt.mine.dedup import DedupSettings
from codemt.source import reading

# Bump when staged records or their dedup keys change meaning, so stale stages are redone.
STAGE_FORMAT = 4
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class FilterSettings:
    """CodeSearchNet's filters; they decide the `docstring_task` column, never drop a method."""

    skip_dunder: bool = True
    skip_test_names: bool = True
    min_lines: int = 3  # functions of fewer lines (signature + body) are too trivial to describe
    min_docstring_words: int = 3

    def __post_init__(self) -> None:
        if self.min_lines < 0 or self.min_docstring_words < 0:
            raise ValueError("min_lines and min_docstring_words must not be negative")

    def exclusion(self, record: dict) -> str | None:
        """Why a method is not used for docstring generation, or None if it is."""
        name = record["name"].rsplit(".", 1)[-1]
        if not record["docstring"]:
            return "no_docstring"
        if self.skip_dunder and name.startswith("__") and name.endswith("__"):
            return "dunder"
        if self.skip_test_names and "test" in record["name"].lower():
            return "test_name"
        if 1 + record["body"].count("\n") + bool(record["body"]) < self.min_lines:
            return "too_short"
        if len(record["docstring"].split()) < self.min_docstring_words:
            return "short_docstring"
        return None


@dataclass(frozen=True)
class MineSettings:
    """Everything that decides what `codemt mine` produces."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_file_bytes: int = 1_000_000
    # Files and jsonl rows of more tokens are not parsed: memory and time grow with tokens.
    max_parse_tokens: int = reading.MAX_PARSE_TOKENS
    repair: bool = True
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "methods"  # or "repos"; see assign_splits
    shard_rows: int = 100_000
    jsonl: bool = False
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "codemt")
    progress: bool = True
    # Sources kept out of the corpus with every copy of their methods, exact or near (the
    # de-duplication's rules): evaluation data, whose code other projects may have copied.
    exclude: tuple[str, ...] = ()
    # Where sources are staged: "local" (this machine's processes) or "ray" (the workers of
    # the Ray cluster at `ray_address`; None: Ray's own choice, RAY_ADDRESS or a new local one).
    engine: str = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_file_bytes < 1:
            raise ValueError(f"max_file_bytes must be positive, got {self.max_file_bytes}")
        if self.max_parse_tokens < 1:
            raise ValueError(f"max_parse_tokens must be positive, got {self.max_parse_tokens}")
        if len(self.split_ratios) != 3 or any(r < 0 for r in self.split_ratios):
            raise ValueError(
                f"split ratios must be three non-negative numbers, got {self.split_ratios}"
            )
        if abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must add up to 1, got {self.split_ratios}")
        if self.split_by not in ("methods", "repos"):
            raise ValueError(f"split_by must be 'methods' or 'repos', got {self.split_by!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.shard_rows < 1:
            raise ValueError(f"shard_rows must be positive, got {self.shard_rows}")

    def fingerprint(self) -> str:
        """A digest of the settings that change staged records (workers, engine and output
        format don't)."""
        relevant = {
            "version": __version__,
            "stage_format": STAGE_FORMAT,
            "max_file_bytes": self.max_file_bytes,
            "max_parse_tokens": self.max_parse_tokens,
            "repair": self.repair,
            "filters": asdict(self.filters),
            "dedup": asdict(self.dedup),
        }
        return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
