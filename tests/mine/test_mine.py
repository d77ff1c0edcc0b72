"""End-to-end mining: sources in, a de-duplicated corpus split by repository out."""

import hashlib
import json
import textwrap
from collections import Counter

import pytest

from codemt.cli import main
from codemt.corpus import iter_records, read_manifest
from codemt.mine.pipeline import mine
from codemt.mine.selection import assign_splits, split_of
from codemt.mine.settings import MineSettings

GOOD = '''
class Stack:
    """A last-in first-out stack."""

    def push(self, item):
        """Push an item on top of the stack."""
        self.items.append(item)
        self.size += 1

    def pop(self):
        """Remove and return the item on top of the stack."""
        self.size -= 1
        return self.items.pop()


def undocumented(a, b):
    c = a * b
    return c + {n}
'''

PY2 = "def legacy(x):\n    print 'value', x\n    return x\n"


def make_repos(root, count):
    """`count` small repositories, each a folder with a distinct file."""
    for i in range(count):
        repo = root / f"repo{i:02d}"
        repo.mkdir(parents=True)
        (repo / "mod.py").write_text(textwrap.dedent(GOOD.format(n=i)))
    return sorted(str(p) for p in root.iterdir())


def settings(tmp_path, **kwargs):
    return MineSettings(workers=1, progress=False, cache_dir=tmp_path / "cache", **kwargs)


def test_mine_counts_dedups_and_splits_by_repository(tmp_path):
    sources = make_repos(tmp_path / "src", 20)
    manifest = mine(sources, tmp_path / "corpus", settings(tmp_path))

    # 20 repos x 3 methods; push/pop are identical everywhere, so only one copy of each stays.
    assert manifest["dedup"]["methods_before"] == 60
    assert manifest["dedup"]["exact_duplicates"] == 38
    assert manifest["dedup"]["methods_after"] == 22
    records = list(iter_records(tmp_path / "corpus"))
    assert len(records) == 22
    repos_by_split = {}
    for record in records:
        repos_by_split.setdefault(record["split"], set()).add(record["repo"])
    splits = list(repos_by_split.values())
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not a & b, "a repository appears in two splits"
    push = next(r for r in records if r["name"] == "Stack.push")
    assert push["docstring_task"] and push["class_docstring"] == "A last-in first-out stack."
    assert not next(r for r in records if r["name"] == "undocumented")["docstring_task"]
    assert (
        read_manifest(tmp_path / "corpus")["splits"]["train"]["methods"]
        == manifest["splits"]["train"]["methods"]
    )


def test_split_by_repository_hash_or_by_method_share():
    sizes = {f"repo{i}": 1 for i in range(200)} | {"huge": 400}
    by_repos = assign_splits(sizes, (0.8, 0.1, 0.1), "repos")
    assert by_repos == {repo: split_of(repo, (0.8, 0.1, 0.1)) for repo in sizes}
    by_methods = assign_splits(sizes, (0.8, 0.1, 0.1), "methods")
    share = Counter()
    for repo, split in by_methods.items():
        share[split] += sizes[repo]
    # 600 methods: the huge repository trains whole, and the rest fill the held-out ratios.
    assert by_methods["huge"] == "train"
    assert share["valid"] == pytest.approx(60, abs=2) and share["test"] == pytest.approx(60, abs=2)


def test_a_repository_too_large_for_a_held_out_split_trains():
    # 1,000 methods: valid's and test's shares are 100 each, so a repository of over 50
    # trains. Laid out by hash alone, big6 (hash position 0.825) would be the valid split's
    # and big2 (0.965) the test split's largest.
    small = {f"repo{i}": 5 for i in range(176)}
    for big in ("big2", "big6", "big9", "big28"):
        sizes = small | {big: 60, "other": 60}
        splits = assign_splits(sizes, (0.8, 0.1, 0.1), "methods")
        assert splits[big] == "train" and splits["other"] == "train"
        share = Counter()
        for repo, split in splits.items():
            share[split] += sizes[repo]
        assert share["valid"] == pytest.approx(100, abs=5)
        assert share["test"] == pytest.approx(100, abs=5)


def test_large_repositories_train_only_while_the_others_fill_the_held_out_shares():
    # 100 methods, 20 to hold out: a (45) trains, b (40) cannot (15 would be left to fill
    # 20), so b is laid out with c, d and e and the held-out splits are not left empty.
    sizes = {"a": 45, "b": 40, "c": 5, "d": 5, "e": 5}
    splits = assign_splits(sizes, (0.8, 0.1, 0.1), "methods")
    assert splits.keys() == sizes.keys() and splits["a"] == "train"
    assert {"valid", "test"} & set(splits.values())
    # Two repositories, each too large, and half to hold out: one trains, one is held out.
    assert assign_splits({"a": 50, "b": 50}, (0.5, 0.5, 0.0), "methods") in (
        {"a": "train", "b": "valid"},
        {"a": "valid", "b": "train"},
    )
    # Nothing to lay out, or no held-out split at all: everything trains.
    assert assign_splits({}, (1.0, 0.0, 0.0), "methods") == {}
    assert assign_splits({"a": 0}, (0.8, 0.1, 0.1), "methods") == {"a": "train"}
    assert set(assign_splits(sizes, (1.0, 0.0, 0.0), "methods").values()) == {"train"}


def test_bad_files_are_counted_and_the_run_goes_on(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "good.py").write_text(textwrap.dedent(GOOD.format(n=1)))
    (repo / "legacy.py").write_text(PY2)
    (repo / "broken.py").write_text("def f(:\n")
    (repo / "binary.py").write_bytes(b"\x00\x01\x02\x03")
    (repo / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\ndef caf():\n    return '\xe9'\n")
    (repo / "odd.py").write_bytes(b"# -*- coding: klingon -*-\nx = 1\n")
    (repo / "deep.py").write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    manifest = mine([str(repo)], tmp_path / "corpus", settings(tmp_path))
    counts = manifest["counts"]
    assert counts["files_seen"] == 7
    assert counts["files:repaired_py2"] == 1
    assert counts["files_skipped:syntax_error"] == 1
    assert counts["files_skipped:binary"] == 1
    assert counts["files_skipped:bad_encoding"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("files_skipped:")) == 4
    names = {r["name"] for r in iter_records(tmp_path / "corpus")}
    assert {"legacy", "caf", "Stack.push"} <= names


def test_rerun_resumes_and_gives_the_same_corpus(tmp_path):
    sources = make_repos(tmp_path / "src", 4)
    first = mine(sources[:2], tmp_path / "corpus", settings(tmp_path))
    assert not any(s["resumed"] for s in first["sources"])
    second = mine(sources, tmp_path / "corpus", settings(tmp_path))
    assert [s["resumed"] for s in second["sources"]] == [True, True, False, False]
    fresh = mine(sources, tmp_path / "fresh", settings(tmp_path))
    key = lambda r: (r["repo"], r["name"])  # noqa: E731
    assert sorted(iter_records(tmp_path / "corpus"), key=key) == sorted(
        iter_records(tmp_path / "fresh"), key=key
    )
    assert second["dedup"] == fresh["dedup"]


def test_parallel_workers_give_the_same_corpus(tmp_path):
    sources = make_repos(tmp_path / "src", 6)
    mine(sources, tmp_path / "one", settings(tmp_path))
    mine(
        sources,
        tmp_path / "two",
        MineSettings(workers=2, progress=False, cache_dir=tmp_path / "cache"),
    )
    assert list(iter_records(tmp_path / "one")) == list(iter_records(tmp_path / "two"))


def test_codesearchnet_jsonl_round_trip(tmp_path):
    sources = make_repos(tmp_path / "src", 3)
    (tmp_path / "src" / "repo00" / "legacy.py").write_text(PY2)
    manifest = mine(
        sources, tmp_path / "corpus", settings(tmp_path, jsonl=True, split_ratios=(1.0, 0.0, 0.0))
    )
    jsonl = tmp_path / "corpus" / "jsonl" / "train.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == manifest["jsonl"]["train"] == manifest["dedup"]["methods_after"]
    push = next(r for r in rows if r["func_name"] == "Stack.push")
    assert push["docstring_tokens"] == [
        "Push",
        "an",
        "item",
        "on",
        "top",
        "of",
        "the",
        "stack",
        ".",
    ]
    assert "self" in push["code_tokens"] and "Push" not in push["code_tokens"]

    again = mine([str(jsonl)], tmp_path / "again", settings(tmp_path, split_ratios=(1.0, 0.0, 0.0)))
    assert again["dedup"]["methods_after"] == manifest["dedup"]["methods_after"]
    fields = ("repo", "path", "name", "signature", "docstring", "body", "class_name", "lineno")
    project = lambda records: sorted(tuple(r[f] for f in fields) for r in records)  # noqa: E731
    assert project(iter_records(tmp_path / "again")) == project(iter_records(tmp_path / "corpus"))


def test_failed_source_is_reported_and_skipped(tmp_path):
    sources = make_repos(tmp_path / "src", 1) + [str(tmp_path / "missing")]
    manifest = mine(sources, tmp_path / "corpus", settings(tmp_path))
    failures = [f for s in manifest["sources"] for f in s["failures"]]
    assert [f["reason"] for f in failures] == ["not_found"]
    assert manifest["dedup"]["methods_after"] == 3


def test_cli_mines_and_prints_the_report(tmp_path, capsys):
    sources = make_repos(tmp_path / "src", 2)
    code = main(
        [
            "mine",
            *sources,
            "--out",
            str(tmp_path / "corpus"),
            "--workers",
            "1",
            "--quiet",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "methods: 6 extracted" in out and "manifest" in out


def test_invalid_settings_are_explained():
    with pytest.raises(ValueError, match="add up to 1"):
        MineSettings(split_ratios=(0.5, 0.1, 0.1))


COPIED = '''
def clear_env_vars(prefixes):
    """Remove the environment variables that start with any of the prefixes."""
    removed = {}
    for key, value in list(os.environ.items()):
        for prefix in prefixes:
            if key.startswith(prefix):
                removed[key] = value
                del os.environ[key]
    return removed
'''

SHORT = '''
def twice(value):
    """Twice the value, whatever its type is."""
    doubled = value + value
    return doubled
'''


def _benchmark_file(path, *methods):
    rows = [
        {"repo": "someone/evaluated", "path": "m.py", "func_name": f"f{i}", "language": "python",
         "code": textwrap.dedent(code).strip(), "docstring": ""}
        for i, code in enumerate(methods)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    "copy, excluded",
    [
        (COPIED, True),  # exact
        # A type annotation added: the very same body.
        (COPIED.replace("(prefixes):", "(prefixes: list[str]) -> dict[str, str]:"), True),
        # A line added: a near duplicate, not the same body.
        (COPIED.replace("    return removed", "    print(removed)\n    return removed"), True),
        # The same short body under another signature: many unrelated methods share one.
        (SHORT.replace("twice(value)", "double(item, other=None)"), False),
    ],
)
def test_excluded_sources_and_their_copies_stay_out_of_the_corpus(tmp_path, capsys, copy, excluded):
    sources = make_repos(tmp_path / "src", 3)
    # Another project copied an evaluated method.
    (tmp_path / "src" / "repo01" / "env.py").write_text(textwrap.dedent(copy))
    name = "double" if "double" in copy else "clear_env_vars"
    benchmark = _benchmark_file(tmp_path / "benchmark.jsonl", COPIED, SHORT)
    kept = mine(sources, tmp_path / "kept", settings(tmp_path))
    names = lambda corpus: {r["name"] for r in iter_records(corpus)}  # noqa: E731
    assert name in names(tmp_path / "kept") and kept["dedup"].get("excluded") == 0

    manifest = mine(sources, tmp_path / "corpus", settings(tmp_path, exclude=(str(benchmark),)))
    assert (name not in names(tmp_path / "corpus")) is excluded
    assert manifest["dedup"]["excluded"] == int(excluded)
    assert manifest["dedup"]["methods_after"] == kept["dedup"]["methods_after"] - excluded
    digest = hashlib.sha256(benchmark.read_bytes()).hexdigest()
    assert manifest["settings"]["exclude"] == [
        {"source": str(benchmark), "methods": 2, "sha256": digest}
    ]
    assert {r["repo"] for r in iter_records(tmp_path / "corpus")} == {
        r["repo"] for r in iter_records(tmp_path / "kept")
    }  # the benchmark's own methods are not mined

    # From the command line, with the count in the report.
    main(["mine", *sources, "--out", str(tmp_path / "cli"), "--exclude", str(benchmark),
          "--workers", "1", "--cache-dir", str(tmp_path / "cache"), "--quiet"])  # fmt: skip
    assert f"excluded: {int(excluded)} methods removed as copies" in capsys.readouterr().out


def test_an_excluded_source_that_keeps_nothing_out_is_refused(tmp_path):
    sources = make_repos(tmp_path / "src", 2)
    missing = tmp_path / "benchmark.jsonl"
    with pytest.raises(ValueError, match="--exclude .*benchmark.jsonl"):
        mine(sources, tmp_path / "corpus", settings(tmp_path, exclude=(str(missing),)))
    # Once the file is there, the same command reads it (nothing stale was kept).
    _benchmark_file(missing, COPIED)
    manifest = mine(sources, tmp_path / "corpus", settings(tmp_path, exclude=(str(missing),)))
    assert manifest["settings"]["exclude"][0]["methods"] == 1
