"""The recipe's corpus: what the default model's environment must have installed, the
check that no evaluation project is trained on, and the smallest copy of a prepared run
folder that trains elsewhere."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from codemt.corpus import iter_batches, manifest_path, read_manifest, shard_dir, shard_paths
from codemt.recipe.recipes import Recipe
from codemt.token_cache import CACHED_COLUMNS, method_keys


def _project(name: str) -> str:
    """A repository's project name: `pypi/Foo_Bar` and `owner/foo-bar` both give `foo-bar`."""
    return re.sub(r"[-_.]+", "-", name.rsplit("/", 1)[-1]).lower()


def missing_corpus_packages() -> list[str]:
    """What this environment lacks of codemt's `corpus` extra: a package missing, or one
    older than the extra asks for (as `django 4.2.1 (wants >=5)`).

    The recipe mines whatever is installed; the default model's corpus is the standard
    library plus codemt with all its extras, `corpus` above all (its reason to exist).
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(text) for text in metadata.requires("codemt") or []]
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return []
    wanted = [
        r
        for r in requirements
        if r.marker is not None
        and r.marker.evaluate({"extra": "corpus"})
        and not r.marker.evaluate({"extra": ""})
    ]
    if not wanted:
        return ["codemt[corpus] (the installed codemt's metadata has no such extra: reinstall it)"]
    missing = []
    for requirement in wanted:
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement.name} {version} (wants {requirement.specifier})")
    return missing


def check_no_leak(corpus: Path, benchmark: Path) -> None:
    """Refuse a corpus that holds a project of the evaluation file; warn when it was mined
    without keeping the file's methods out (`MineSettings.exclude`): other projects may
    have copied some of them."""
    excluded = read_manifest(corpus)["settings"].get("exclude", [])
    # By content: the corpus may have been mined where the file had another path.
    digest = hashlib.sha256(Path(benchmark).read_bytes()).hexdigest()
    if not any(isinstance(e, dict) and e.get("sha256") == digest for e in excluded):
        print(
            f"codemt recipe: warning: {corpus} was mined without excluding the methods of "
            f"{benchmark}: copies of them in other projects may be trained on. Mine it again "
            f"with `codemt mine ... --exclude {benchmark}` (or a new run folder does).",
            file=sys.stderr,
        )

    evaluated = set()
    with open(benchmark, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                evaluated.add(_project(json.loads(line).get("repo", "")))
    mined = set()
    for batch in iter_batches(corpus, columns=["repo"]):
        mined.update(batch.column("repo").unique().to_pylist())
    leaked = sorted(r for r in mined if _project(r) in evaluated)
    if leaked:
        raise ValueError(
            f"{benchmark} evaluates on projects that are in the training corpus ({', '.join(leaked)}); "
            f"uninstall them from this environment and rerun, or evaluate on other data"
        )


def copy_for_training(out: Path, dest: Path) -> int:
    """Write to `dest` the smallest copy of the prepared run folder `out` that trains: the
    recipe, the tokenizer, the corpus manifest and the train and valid shards with only the
    columns training reads (and `repo`, for the leak check) and, in the train split, only
    the methods training draws from (`ExampleSettings.undocumented_kept`), recompressed
    harder. Returns the bytes written. For a machine without network that trains what was
    mined here (the `corpus`-extra environment: 472 MB of shards, 62.8 MB so), with the recipe's
    `train_only` (`--train-only`): the copy has no test split, so the evaluation and export
    are done back here (`finish`). Its manifest is the whole corpus's, and other commands
    reading its shards would miss columns.
    """
    dest = Path(dest)
    check_copy_destination(dest)
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{out}: no tokenizer yet; prepare the run folder first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
    try:
        _copy_run(out, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.chmod(0o755)  # as a folder made with mkdir, not mkdtemp's owner-only
    if dest.exists():
        dest.rmdir()
    tmp.replace(dest)
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def check_copy_destination(dest: Path) -> None:
    """Refuse a destination for `copy_for_training` that is a file or a non-empty folder."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest} is not an empty folder: give a new folder to copy the run into")


def _copy_run(out: Path, tmp: Path) -> None:
    import pyarrow.parquet as pq

    corpus = out / "corpus"
    (tmp / "corpus").mkdir(parents=True)
    shutil.copy2(manifest_path(corpus), tmp / "corpus" / manifest_path(corpus).name)
    shards = tmp / "corpus" / shard_dir(corpus).relative_to(corpus)
    shards.mkdir()
    training = ["repo", *CACHED_COLUMNS]
    recorded = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    examples = Recipe.from_record(recorded).examples
    for split in ("train", "valid"):
        for path in shard_paths(corpus, split):
            table = pq.read_table(path, columns=training)
            if split == "train":  # validation keeps every method
                table = _kept_methods(table, examples.undocumented_kept)
            if not examples.context:
                table = _without_context(table)
            # Level 19: 9% smaller than 9 on these shards, in seconds more.
            pq.write_table(table, shards / path.name, compression="zstd", compression_level=19)
    shutil.copytree(out / "tokenizer", tmp / "tokenizer")
    shutil.copy2(out / "recipe.json", tmp / "recipe.json")


def _kept_methods(table, kept: float):
    """`table` without the undocumented methods that training leaves out
    (`ExampleSettings.undocumented_kept`)."""
    import numpy as np
    import pyarrow as pa

    if kept >= 1.0:
        return table
    keys = method_keys(
        table.column("signature").to_pylist(),
        [body or "" for body in table.column("body").to_pylist()],
    )
    documented = np.asarray(table.column("docstring_task").to_pylist(), dtype=bool)
    return table.filter(pa.array(documented | (keys < kept)))


def _without_context(table):
    """`table` with the context features (imports, decorators, the class's docstring) left
    empty, for a recipe whose examples do not use them: no example changes, and the imports,
    repeated for every method of a file, are most of the training columns' text."""
    import pyarrow as pa

    for name, empty in (("imports", []), ("decorators", []), ("class_docstring", "")):
        column = table.schema.get_field_index(name)
        field = table.schema.field(column)
        table = table.set_column(column, field, pa.array([empty] * len(table), field.type))
    return table
