"""The on-disk method corpus: Parquet shards plus a manifest, written by `codemt mine`.

Every later stage (tokenizer, examples, training, evaluation) reads the corpus through
this module, so the layout lives in one place::

    DIR/manifest.json                 what produced the corpus, counts per reason and split
    DIR/shards/{split}-{index:05d}.parquet
    DIR/jsonl/{split}.jsonl           optional CodeSearchNet-schema export
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "valid", "test")

# One row per function or method. Column order is the order written to disk.
SCHEMA = pa.schema(
    [
        ("repo", pa.string()),
        ("path", pa.string()),
        ("name", pa.string()),  # qualified: Class.method, outer.<locals>.inner
        ("lineno", pa.int32()),
        ("signature", pa.string()),  # normalised `def` line(s), decorators excluded
        ("docstring", pa.string()),  # cleaned; "" when the method has none
        ("docstring_raw", pa.string()),
        ("body", pa.string()),  # normalised source of the body without the docstring
        ("decorators", pa.list_(pa.string())),
        ("class_name", pa.string()),  # "" for module-level functions
        ("class_bases", pa.list_(pa.string())),
        ("class_docstring", pa.string()),
        ("imports", pa.list_(pa.string())),  # the file's import statements
        ("docstring_style", pa.string()),  # summary|google|numpy|rest|other|"" (none)
        ("is_async", pa.bool_()),
        ("docstring_task", pa.bool_()),  # passes CodeSearchNet's filters for docstring generation
        ("split", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def shard_dir(corpus: Path) -> Path:
    """Folder holding the Parquet shards of a corpus."""
    return Path(corpus) / "shards"


def manifest_path(corpus: Path) -> Path:
    """Path of the manifest of a corpus."""
    return Path(corpus) / "manifest.json"


def read_manifest(corpus: Path) -> dict:
    """Load a corpus manifest, with an error that says what to do when it is missing."""
    path = manifest_path(corpus)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no corpus manifest here; build a corpus first with `codemt mine SOURCE --out {corpus}`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def shard_paths(corpus: Path, split: str | None = None) -> list[Path]:
    """The Parquet shards of a corpus, optionally of one split, in a stable order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not shard_dir(corpus).is_dir():
        read_manifest(corpus)  # raises the helpful error when this is no corpus at all
    pattern = f"{split}-*.parquet" if split else "*.parquet"
    return sorted(shard_dir(corpus).glob(pattern))


def iter_batches(
    corpus: Path,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    batch_size: int = 4096,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches from the corpus without loading it whole into memory."""
    for path in shard_paths(corpus, split):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)


def iter_records(
    corpus: Path, split: str | None = None, columns: Sequence[str] | None = None
) -> Iterator[dict]:
    """Stream the corpus as one dict per method."""
    for batch in iter_batches(corpus, split, columns):
        yield from batch.to_pylist()


@dataclass(frozen=True)
class Corpus:
    """A corpus on disk opened once: its folder and its manifest, read and checked here, so
    that a run that reads the corpus many times (token caches, checkpoints' records) reads
    the manifest once."""

    path: Path
    manifest: dict
    manifest_bytes: bytes  # as stored: what caches and checkpoints are keyed by

    @classmethod
    def open(cls, path: Path | str) -> Corpus:
        """The corpus in `path`; FileNotFoundError saying how to make one where there is none."""
        path = Path(path)
        read_manifest(path)  # the error that says what to do
        data = manifest_path(path).read_bytes()
        return cls(path, json.loads(data), data)

    @property
    def digest(self) -> str:
        """A short digest of the manifest, recorded in checkpoints."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()[:16]

    def shard_paths(self, split: str | None = None) -> list[Path]:
        """The Parquet shards, optionally of one split, in a stable order."""
        return shard_paths(self.path, split)

    def iter_batches(
        self, split: str | None = None, columns: Sequence[str] | None = None, batch_size: int = 4096
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches without loading the corpus whole into memory."""
        return iter_batches(self.path, split, columns, batch_size)


def write_table(records: Iterable[dict] | pa.Table, path: Path) -> int:
    """Write records to one Parquet file atomically (temp file, then rename); return the row count."""
    table = (
        records
        if isinstance(records, pa.Table)
        else pa.Table.from_pylist(list(records), schema=SCHEMA)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return table.num_rows
