"""Project memory: retrieval, the on-disk cache, leave-one-out evaluation, training neighbours."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from codemt import memory as memory_module
from codemt.memory import (
    Memory,
    Neighbor,
    ProjectMemory,
    code_words,
    likeness,
    neighbors_from_request,
    open_project_memory,
    project_root,
    split_neighbors,
)

VIDEO_SITE = '''\
def download_sina(url, output_dir="."):
    """Downloads Sina videos by URL."""
    html = get_content(url)
    return save_video(html, output_dir)


def download_cbs(url, output_dir="."):
    """Downloads CBS videos by URL."""
    html = get_content(url)
    return save_video(html, output_dir)


def parse_config(path):
    """Reads the configuration file."""
    with open(path) as handle:
        return json.load(handle)


def download_youku(url, output_dir="."):
    html = get_content(url)
    return save_video(html, output_dir)
'''


def record(name, signature, body, docstring="", path="site.py"):
    return {"name": name, "signature": signature, "body": body, "docstring": docstring,
            "path": path}  # fmt: skip


def test_code_words_split_identifiers_and_drop_keywords():
    words = code_words("def getHTTPResponse_code(self, url):\n    return None")
    assert words == ["get", "http", "response", "code", "url"]


def test_the_most_alike_function_comes_first_and_never_the_function_itself():
    records = [
        record("download_sina", 'def download_sina(url):', "    return get_video(url)",
               "Downloads Sina videos by URL."),
        record("download_cbs", 'def download_cbs(url):', "    return get_video(url)",
               "Downloads CBS videos by URL."),
        record("parse_config", "def parse_config(path):", "    return json.load(open(path))",
               "Reads the configuration file."),
    ]  # fmt: skip
    memory = Memory.from_records(records)
    found = memory.neighbors(records[0], k=3)
    assert [n.name for n in found][0] == "download_cbs"
    assert "download_sina" not in [n.name for n in found]
    # The same code elsewhere (a copy in another file) is the function itself too.
    copy = {**records[1], "path": "other.py", "name": "copy_of_cbs"}
    assert "download_cbs" not in [n.name for n in memory.neighbors(copy, k=3)]
    # Nothing in common: no neighbour rather than a random one.
    stranger = record("zzz", "def zzz(qq):", "    return qq")
    assert memory.neighbors(stranger, k=3) == []


def test_an_empty_memory_and_k_zero_find_nothing():
    assert Memory([]).neighbors(record("f", "def f(x):", "    return x"), k=3) == []
    memory = Memory([Neighbor("g", "def g(x):", "Does g.", "    return x")])
    assert memory.neighbors(record("f", "def f(x):", "    return x"), k=0) == []


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (root / "pkg" / "site.py").write_text(VIDEO_SITE)
    return root


def test_project_root_is_the_nearest_folder_with_a_marker(tmp_path):
    root = make_project(tmp_path)
    assert project_root([root / "pkg" / "site.py"]) == root
    assert project_root([root / "pkg"]) == root
    bare = tmp_path / "bare"
    bare.mkdir()
    assert project_root([bare / "x.py"]) == bare


def test_project_memory_reads_documented_functions_and_caches_them(tmp_path):
    root, cache = make_project(tmp_path), tmp_path / "cache"
    memory = ProjectMemory.open(root, cache_dir=cache)
    assert sorted(n.name for n in memory.memory.entries) == [
        "download_cbs", "download_sina", "parse_config"
    ]  # fmt: skip
    target = record(
        "download_youku", 'def download_youku(url, output_dir="."):',
        "    html = get_content(url)\n    return save_video(html, output_dir)",
        path=str(root / "pkg" / "site.py"),
    )  # fmt: skip
    found = memory.neighbors(target, k=2)
    assert {n.name for n in found} == {"download_sina", "download_cbs"}
    assert found[0].path == "pkg/site.py" and found[0].docstring.startswith("Downloads")
    [stored] = list(cache.glob("*.json"))
    assert json.loads(stored.read_text())["root"] == str(root.resolve())


def test_a_changed_file_is_read_again_and_an_unchanged_one_is_not(tmp_path, monkeypatch):
    root, cache = make_project(tmp_path), tmp_path / "cache"
    ProjectMemory.open(root, cache_dir=cache)
    parsed = []
    real = memory_module._documented_functions
    monkeypatch.setattr(
        memory_module, "_documented_functions", lambda d, r: parsed.append(r) or real(d, r)
    )
    ProjectMemory.open(root, cache_dir=cache)
    assert parsed == []  # all from the cache
    site = root / "pkg" / "site.py"
    site.write_text(VIDEO_SITE.replace("Reads the configuration", "Loads the settings"))
    memory = ProjectMemory.open(root, cache_dir=cache)
    assert parsed == ["pkg/site.py"]
    assert "Loads the settings file." in {n.docstring for n in memory.memory.entries}


def test_building_a_memory_collects_garbage_rarely_and_gives_the_setting_back(
    tmp_path, monkeypatch
):
    import gc

    from codemt.source.reading import RARE_GC_THRESHOLD

    root = make_project(tmp_path)
    before = gc.get_threshold()
    seen = []
    take = ProjectMemory._take
    monkeypatch.setattr(
        ProjectMemory, "_take", lambda self, *a: seen.append(gc.get_threshold()) or take(self, *a)
    )
    assert len(ProjectMemory.open(root, cache_dir=tmp_path / "cache")) == 3
    assert seen[0][0] == RARE_GC_THRESHOLD and gc.get_threshold() == before


def test_building_an_index_prints_nothing_under_a_root_handler(tmp_path, caplog):
    """bm25s logs each index at DEBUG level; a root handler (rouge-score's absl installs
    one during `codemt evaluate`) printed those lines to the user."""
    import logging

    with caplog.at_level(logging.DEBUG):  # a root handler that takes every level
        memory = Memory.from_records(
            [
                record("download_sina", "def download_sina(url):", "    return get_video(url)",
                       docstring="Downloads Sina videos."),
                record("parse_feed", "def parse_feed(text):", "    return feed(text)",
                       docstring="Parse an RSS feed."),
            ]
        )  # fmt: skip
        assert memory.neighbors(record("download_cbs", "def download_cbs(url):", ""), k=1)
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_a_cache_of_another_version_or_damaged_is_rebuilt_not_trusted(tmp_path):
    root, cache = make_project(tmp_path), tmp_path / "cache"
    ProjectMemory.open(root, cache_dir=cache)
    [stored] = list(cache.glob("*.json"))
    data = json.loads(stored.read_text())
    # A forged entry under another format: must not be believed.
    data["format"] = -1
    entry = data["files"]["pkg/site.py"]
    entry["functions"] = [{**entry["functions"][0], "docstring": "FORGED"}]
    stored.write_text(json.dumps(data))
    memory = ProjectMemory.open(root, cache_dir=cache)
    assert "FORGED" not in {n.docstring for n in memory.memory.entries}
    assert any("another version" in note for note in memory.notes)
    stored.write_text("{not json")
    memory = ProjectMemory.open(root, cache_dir=cache)
    assert len(memory) == 3 and any("unreadable" in note for note in memory.notes)
    assert json.loads(stored.read_text())["format"] == memory_module.CACHE_FORMAT


def test_unreadable_and_unparsable_files_are_skipped_and_counted(tmp_path):
    root = make_project(tmp_path)
    (root / "pkg" / "broken.py").write_text("def broken(:\n    pass\n")
    (root / "pkg" / "latin.py").write_bytes(b'def f():\n    "Caf\xe9 au lait."\n    return 1\n')
    loop = root / "pkg" / "loop.py"
    os.symlink(loop, loop)  # a symlink to itself
    memory = ProjectMemory.open(root, cache_dir=tmp_path / "cache")
    assert "pkg/broken.py" in memory.skipped
    assert len(memory) >= 3  # the good file is read whatever the others are


def test_open_memory_falls_back_to_none_saying_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEMT_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.py").write_text("def f(x):\n    return x\n")
    said = []
    assert open_project_memory([], project=empty, say=said.append, progress=False) is None
    assert len(said) == 1 and "no documented function" in said[0] and ".gitignore" in said[0]
    said.clear()
    missing = tmp_path / "missing"
    assert open_project_memory([], project=missing, say=said.append, progress=False) is None
    assert len(said) == 1 and "project memory off" in said[0]


def test_memory_none_on_the_command_line_opens_no_memory(tmp_path):
    import argparse

    from codemt.cli.translate import add_memory_arguments, open_memory

    parser = argparse.ArgumentParser()
    add_memory_arguments(parser)
    args = parser.parse_args(["--memory", "none", "--project", str(tmp_path)])
    assert open_memory(args, [tmp_path]) is None


def test_refresh_takes_a_saved_file_and_forgets_a_deleted_one(tmp_path):
    root = make_project(tmp_path)
    memory = ProjectMemory.open(root, cache_dir=None)
    extra = root / "pkg" / "extra.py"
    extra.write_text('def stream_video(url):\n    """Streams a video."""\n    return url\n')
    memory.refresh(extra)
    assert "Streams a video." in {n.docstring for n in memory.memory.entries}
    extra.unlink()
    memory.refresh(extra)
    assert "Streams a video." not in {n.docstring for n in memory.memory.entries}


def test_two_processes_saving_the_cache_leave_a_whole_one(tmp_path):
    root, cache = make_project(tmp_path), tmp_path / "cache"
    first = ProjectMemory.open(root, cache_dir=cache)
    second = ProjectMemory.open(root, cache_dir=cache)
    first._save_cache()
    second._save_cache()
    [stored] = list(cache.glob("*"))  # no temporary file left behind
    assert len(json.loads(stored.read_text())["files"]["pkg/site.py"]["functions"]) == 3


def test_neighbors_from_request_checks_every_item():
    found = neighbors_from_request([{"signature": "def f():", "docstring": "Does f.\n\nMore."}])
    assert found == [Neighbor("", "def f():", "Does f.")]
    with pytest.raises(ValueError, match="context item 0"):
        neighbors_from_request([{"signature": 1, "docstring": "x"}])
    with pytest.raises(ValueError, match="context item 1"):
        neighbors_from_request([{"signature": "def f():", "docstring": "x"}, "nope"])


# ------------------------------------------------------------------ training and evaluation


def test_split_neighbors_come_from_the_same_repository_and_never_the_method(small_corpus):
    from codemt.corpus import iter_records

    records = list(iter_records(small_corpus, "train"))
    found = split_neighbors(small_corpus, "train", 3)
    assert found["docstring"].shape == (len(records), 3)
    some = 0
    for target, rows in found.items():
        for i, row in enumerate(rows.tolist()):
            for j in row:
                if j < 0:
                    continue
                some += 1
                assert j != i and records[j]["repo"] == records[i]["repo"]
                assert records[j]["docstring"]
                if target == "docstring":
                    assert records[i]["docstring_task"]
    assert some > 50


def test_split_neighbors_streamed_equal_a_search_over_every_repository_held_whole(
    small_corpus, tmp_path
):
    """The streamed search (a repository's methods held until its last one went by) finds
    what searching each repository with all its records in memory finds, with the split's
    rows cut to a spread subset too, and when a repository's methods are not together in
    the shards (its rows split around another repository's)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from codemt.corpus import iter_records, shard_paths
    from codemt.memory import Memory, neighbor_of, prose_summary

    def held_whole(corpus, rows=None):
        records = list(iter_records(corpus, "train"))
        if rows is not None:
            records = [records[i] for i in rows.tolist()]
        found = {t: np.full((len(records), 3), -1, np.int32) for t in ("docstring", "body")}
        repos = {}
        for i, record in enumerate(records):
            repos.setdefault(record["repo"], []).append(i)
        for members in repos.values():
            documented = [i for i in members if prose_summary(records[i]["docstring"] or "")]
            if len(documented) < 2:
                continue
            memory = Memory([neighbor_of(records[i]) for i in documented])
            for i in documented:
                targets = ("docstring", "body") if records[i]["docstring_task"] else ("body",)
                for target in targets:
                    picked = [documented[j] for j in memory.search(records[i], 3, target=target)]
                    found[target][i, : len(picked)] = picked
        return found

    # A copy whose first repository's rows are cut in two around the others'.
    mixed = tmp_path / "mixed"
    shutil.copytree(small_corpus, mixed)
    paths = shard_paths(mixed, "train")
    table = pa.concat_tables(pq.read_table(p) for p in paths)
    first = table.column("repo")[0].as_py()
    mine = np.flatnonzero(np.asarray(table.column("repo").to_pylist()) == first)
    others = np.setdiff1d(np.arange(table.num_rows), mine)
    half = len(mine) // 2
    table = table.take(np.concatenate([mine[:half], others, mine[half:]]))
    for p in paths:
        p.unlink()
    pq.write_table(table, paths[0])

    rows = np.unique(np.linspace(0, table.num_rows - 1, table.num_rows // 2).astype(np.int64))
    for corpus, chosen in ((small_corpus, None), (small_corpus, rows), (mixed, None)):
        streamed = split_neighbors(corpus, "train", 3, chosen)
        expected = held_whole(corpus, chosen)
        for target in ("docstring", "body"):
            assert np.array_equal(streamed[target], expected[target])
        assert (streamed["body"] >= 0).sum() > 50


def test_training_examples_with_neighbors_fit_their_planned_length(small_corpus, small_tokenizer,
                                                                   tmp_path):  # fmt: skip
    from codemt.corpus import Corpus
    from codemt.data import BatchSettings, ExampleData
    from codemt.examples import ExampleSettings, Vocabulary
    from codemt.token_cache import TokenCache

    cache = TokenCache.build(
        Corpus.open(small_corpus), "train", small_tokenizer, tmp_path / "cache"
    )
    vocab = Vocabulary.from_tokenizer(small_tokenizer)
    settings = ExampleSettings(max_source_tokens=64, max_target_tokens=32, neighbors=2)
    data = ExampleData(cache, vocab, "multimode", settings, BatchSettings(max_tokens=2048))
    planned = list(data.plan(0).examples())
    with_neighbors = [p for p in planned if p.neighbors]
    # Of the examples whose method has neighbours for the target, `neighbor_share` (0.7).
    could = [p for p in planned if data.neighbors_of(p.method, p.mode.target)]
    assert 0.55 * len(could) < len(with_neighbors) < 0.85 * len(could)
    for item in with_neighbors[:200]:
        source, target = data.build(item, 0)
        assert len(source) <= item.source_len and len(target) <= item.target_len
        assert len(source) <= 64 + 2 * 2 * settings.neighbor_tokens
    # The neighbours are kept beside the cache and the plan is the same the next time.
    assert list(cache.folder.glob("neighbors-*.npz"))
    again = ExampleData(cache, vocab, "multimode", settings, BatchSettings(max_tokens=2048))
    assert list(again.plan(0).examples()) == planned
    # Without neighbours, the plans are those of before (no extra random draw).
    plain = ExampleData(
        cache, vocab, "multimode", ExampleSettings(max_source_tokens=64, max_target_tokens=32),
        BatchSettings(max_tokens=2048),
    )  # fmt: skip
    assert not plain.plan(0).neighbors.any()


def tiny_jsonl(path: Path) -> Path:
    rows = [
        ("a/videos", "sina.py", "download_sina", "Downloads Sina videos by URL."),
        ("a/videos", "cbs.py", "download_cbs", "Downloads CBS videos by URL."),
        ("a/videos", "youku.py", "download_youku", "Downloads Youku videos by URL."),
        ("b/other", "conf.py", "download_conf", "Fetches the remote configuration."),
    ]
    lines = []
    for repo, file, name, doc in rows:
        code = (
            f'def {name}(url, output_dir="."):\n    """{doc}"""\n'
            f"    html = get_content(url)\n    return save_video(html, output_dir)\n"
        )
        lines.append(json.dumps({
            "repo": repo, "path": file, "func_name": name, "code": code,
            "docstring": doc, "docstring_tokens": doc.rstrip(".").split() + ["."],
        }))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_leave_one_out_memory_on_a_tiny_jsonl(tmp_path):
    from codemt.evaluate import evaluate_baselines, load_data, parse_mode

    data = load_data(tiny_jsonl(tmp_path / "rows.jsonl"))
    chosen = data.examples(parse_mode("docstring"))
    with_memory = data.with_neighbors(chosen, "docstring", 3)
    for row in with_memory:
        names = [n.name for n in row["neighbors"]]
        assert row["name"] not in names  # never the row itself
        if row["repo"] == "a/videos":
            assert len(names) == 2
        else:
            assert names == []  # nothing else in its repository
    baselines = evaluate_baselines(data)
    # Three of four rows find a sibling written the same way.
    assert (
        baselines["nearest_docstring"]["smoothed_bleu4"] > baselines["name_words"]["smoothed_bleu4"]
    )


@pytest.fixture(scope="module")
def memory_model(tiny_model, tmp_path_factory):
    """The tiny model, told that it reads two neighbours (its weights do not care)."""
    import shutil

    from codemt.model import resolve_checkpoint

    folder = tmp_path_factory.mktemp("memory_model") / "model"
    shutil.copytree(resolve_checkpoint(tiny_model), folder)
    meta = json.loads((folder / "codemt.json").read_text())
    meta["modes"]["examples"]["neighbors"] = 2
    (folder / "codemt.json").write_text(json.dumps(meta))
    return folder


def test_settings_cap_the_neighbours_a_model_reads(memory_model):
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")  # trained with up to 2
    method = record("download_youku", "def download_youku(url):", "    return get_video(url)")
    siblings = [
        Neighbor(f"download_{n}", f"def download_{n}(url):", f"Downloads {n} videos.")
        for n in ("cbs", "sina", "ted")
    ]
    given = {**method, "neighbors": siblings}
    read = lambda **k: translator.neighbors_read(GenerationSettings(**k))  # noqa: E731
    assert read(neighbors=1) == 1
    assert read(neighbors=None) == read(neighbors=5) == 2  # never past its training
    assert read(neighbors=0) == 0
    # Docstrings are looked up with the neighbours whose summaries are offered too.
    found = lambda target, **k: translator.neighbors_of(  # noqa: E731
        given, target, settings=GenerationSettings(**k)
    )
    assert len(found("body", neighbors=1)) == 1
    assert len(found("docstring", neighbors=1, offered_neighbors=0)) == 1
    assert [n["docstring"] for n in found("docstring", neighbors=1)] == [
        "Downloads cbs videos.",
        "Downloads sina videos.",
        "Downloads ted videos.",
    ]  # offered_neighbors 3
    assert len(found("docstring", neighbors=1, offered_neighbors=2)) == 2
    for bad in ("neighbors", "offered_neighbors"):
        with pytest.raises(ValueError, match=bad):
            GenerationSettings(**{bad: -1})


def test_the_model_reads_two_neighbours_and_three_summaries_are_offered(memory_model, monkeypatch):
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    method = record("download_youku", "def download_youku(url):", "    return get_video(url)")
    siblings = [
        Neighbor(f"download_{n}", f"def download_{n}(url):", f"Downloads {n} videos.")
        for n in ("cbs", "sina", "ted", "bbc")
    ]
    given = {**method, "neighbors": siblings}
    encoded, offered = [], []
    encode, offer = Translator.encode, Translator._offered

    def spy_encode(self, records, target, style=None, **kwargs):
        encoded.append(kwargs["neighbors"])
        return encode(self, records, target, style, **kwargs)

    def spy_offered(self, records, neighbors, *args):
        offered.append(neighbors)
        return offer(self, records, neighbors, *args)

    monkeypatch.setattr(Translator, "encode", spy_encode)
    monkeypatch.setattr(Translator, "_offered", spy_offered)
    settings = GenerationSettings(num_beams=2, max_new_tokens=6)
    translator.translate_batch([given], "docstring", settings=settings)
    [[read]], [[shown]] = encoded, offered
    assert [n["docstring"] for n in read] == ["Downloads cbs videos.", "Downloads sina videos."]
    assert [n["docstring"] for n in shown] == [
        f"Downloads {n} videos." for n in ("cbs", "sina", "ted")
    ]


def test_a_translator_reads_neighbors_from_its_memory_or_the_record(memory_model):
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    assert translator.reads_neighbors
    method = record("download_youku", "def download_youku(url):", "    return get_video(url)")
    alone = translator.encode([{**method, "neighbors": []}], "docstring")[0]
    sibling = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos.")
    given = translator.encode([{**method, "neighbors": [sibling]}], "docstring")[0]
    assert len(given) > len(alone)
    assert "Downloads CBS videos." in translator.tokenizer.decode(given)
    translator.memory = Memory([sibling])
    assert translator.encode([method], "docstring")[0] == given
    # A request's dicts work as well as Neighbor objects.
    as_dict = {"signature": sibling.signature, "docstring": sibling.docstring}
    assert translator.encode([{**method, "neighbors": [as_dict]}], "docstring")[0] == given


def test_evaluate_with_repo_memory_records_it(memory_model, tmp_path, capsys):
    from codemt.cli import main
    from codemt.generation import GenerationSettings

    data = tiny_jsonl(tmp_path / "rows.jsonl")
    out = tmp_path / "eval"
    command = ["evaluate", str(memory_model), "--data", str(data), "--modes", "docstring"]
    command += ["--beams", "1", "--max-new-tokens", "8", "--no-progress", "--backend", "torch"]
    assert main([*command, "--memory", "repo", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["memory"] == "repo"
    assert metrics["least_likeness"] == GenerationSettings().least_likeness
    assert "nearest_docstring" in metrics["baselines"]["docstring"]
    assert "baseline:nearest_docstring" in capsys.readouterr().out


def test_a_memory_array_on_disk_is_reused(small_corpus, small_tokenizer, tmp_path, monkeypatch):
    from codemt.corpus import Corpus
    from codemt.token_cache import TokenCache

    cache = TokenCache.build(
        Corpus.open(small_corpus), "valid", small_tokenizer, tmp_path / "c", limit=20
    )
    first = cache.neighbors(2, progress=False)
    assert first["docstring"].shape == (len(cache), 2)
    monkeypatch.setattr(memory_module, "split_neighbors", lambda *a, **k: 1 / 0)
    again = cache.neighbors(2, progress=False)
    assert all(np.array_equal(first[t], again[t]) for t in first)


# ------------------------------------------------------------------ serving with memory


def test_the_http_api_reads_a_requests_context_and_else_the_servers_project(memory_model):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from codemt.serve.app import create_app
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch", device="cpu")
    seen = []
    real = translator.translate_batch

    def spy(records, *args, **kwargs):
        seen.extend(translator.encode(records, args[0] if args else kwargs["target"]))
        return real(records, *args, **kwargs)

    translator.translate_batch = spy
    sibling = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos.")
    translator.memory = Memory([sibling])
    source = "def download_sina(url):\n    return get_video(url)\n"
    request = {"source": source, "target": "docstring", "num_beams": 1, "max_new_tokens": 8}
    context = [{"signature": "def fetch(url):", "docstring": "Fetches one page."}]
    with TestClient(create_app(translator)) as client:
        assert client.get("/v1/model").json()["reads_context"] is True
        assert client.post("/v1/translate", json={**request, "context": context}).status_code == 200
        assert client.post("/v1/translate", json=request).status_code == 200
        assert client.post("/v1/translate", json={**request, "context": []}).status_code == 200
        too_many = {**request, "context": context * 17}
        assert client.post("/v1/translate", json=too_many).status_code == 422
        a_path = {**request, "context": [{"signature": "x", "docstring": "y", "path": "/etc"}]}
        assert client.post("/v1/translate", json=a_path).status_code == 422
        # Context whose code is nothing like the method's is not read (`least_likeness`).
        unlike = [{"signature": "def close(self):", "docstring": "Close the handle."}]
        assert client.post("/v1/translate", json={**request, "context": unlike}).status_code == 200
    texts = [translator.tokenizer.decode(ids) for ids in seen]
    assert "Fetches one page." in texts[0] and "Downloads CBS" not in texts[0]
    assert "Downloads CBS videos." in texts[1]  # the server's own memory
    assert "Downloads CBS" not in texts[2] and "Fetches" not in texts[2]
    assert len(texts) == 4 and "Close the handle" not in texts[3] and "CBS" not in texts[3]


@pytest.mark.slow
def test_the_language_server_builds_the_workspace_memory(memory_model, tmp_path):
    import sys
    import time

    pytest.importorskip("pygls", reason="the serve extra is not installed")
    from test_lsp import LspClient, apply_edits

    root = make_project(tmp_path)
    target = root / "pkg" / "site.py"
    uri = target.as_uri()
    env = {**os.environ, "CODEMT_CACHE": str(tmp_path / "cache")}
    log = (tmp_path / "stderr.log").open("wb")
    command = [sys.executable, "-m", "codemt.cli", "lsp", "--model", str(memory_model)]
    client = LspClient([*command, "--beams", "1", "--max-new-tokens", "8"], log, env=env)
    try:
        client.request(
            "initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {}}
        )
        client.notify("initialized", {})
        text = target.read_text()
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        )
        for _ in range(100):  # the memory is built in the background and cached on disk
            if list((tmp_path / "cache" / "memory").glob("*.json")):
                break
            time.sleep(0.1)
        assert list((tmp_path / "cache" / "memory").glob("*.json"))
        line = text.split("\n").index('def download_youku(url, output_dir="."):')
        position = {"line": line, "character": 4}
        actions = client.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": {"start": position, "end": position},
             "context": {"diagnostics": []}},
        )["result"]  # fmt: skip
        resolved = client.request("codeAction/resolve", actions[0])["result"]
        edited = apply_edits(text, resolved["edit"]["changes"][uri])
        assert edited != text
        client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
        assert client.request("shutdown")["result"] is None
        client.notify("exit")
        assert client.process.wait(timeout=30) == 0
    finally:
        if client.process.poll() is None:
            client.process.kill()
        log.close()


def test_docstring_command_writes_with_the_projects_memory(memory_model, tmp_path, monkeypatch,
                                                          capsys):  # fmt: skip
    import shutil

    from codemt import translate
    from codemt.cli import main

    monkeypatch.setenv("CODEMT_CACHE", str(tmp_path / "cache"))
    project = tmp_path / "examples"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples", project)
    seen = []
    real = translate.Translator.encode

    def spy(self, methods, target, style=None, **kwargs):
        ids = real(self, methods, target, style, **kwargs)
        seen.extend(self.tokenizer.decode(i) for i in ids)
        return ids

    monkeypatch.setattr(translate.Translator, "encode", spy)
    command = ["docstring", str(project / "undocumented.py"), "--model", str(memory_model)]
    command += ["--beams", "1", "--max-new-tokens", "6", "--backend", "torch"]
    assert main(command) == 0
    # The documented sibling module is the memory: its summaries are read beside.
    assert any("Return the total price of all orders." in text for text in seen)
    assert list((tmp_path / "cache" / "memory").glob("*.json"))
    # A docstring that is a sibling's summary says whose, to be checked first: with names
    # weighing everything, `read_items` takes `read_orders`' sentence, adapted.
    capsys.readouterr()
    assert main([*command, "--name-weight", "1000"]) == 0
    out, err = capsys.readouterr()
    assert '"""Read items from a CSV file' in out
    lines = (project / "undocumented.py").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "def read_items" in text)
    told = "read_items: the summary of read_orders (orders.py:30), its names adapted; check"
    assert f"undocumented.py:{line}: {told}" in err
    one = [f"{project / 'undocumented.py'}:read_items", "--target", "docstring", *command[2:]]
    assert main(["translate", *one, "--name-weight", "1000"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Read items from a CSV file")
    assert f"undocumented.py:{line}: {told}" in err and "read_orders" not in out
    seen.clear()
    assert main([*command, "--memory", "none"]) == 0
    assert seen and not any("orders" in text for text in seen)
    seen.clear()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert main([*command, "--project", str(elsewhere)]) == 0
    assert "no documented function" in capsys.readouterr().err
    # Written, the note gives the function's line in the new file (docstrings above it
    # moved it down), where the user's editor will look.
    assert main([*command, "--name-weight", "1000", "--write"]) == 0
    lines = (project / "undocumented.py").read_text().splitlines()
    moved = next(n for n, text in enumerate(lines, 1) if "def read_items" in text)
    assert moved > line and f"undocumented.py:{moved}: {told}" in capsys.readouterr().err


def test_a_huge_project_is_cut_and_said_so(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    for i in range(4):
        (root / "pkg" / f"more{i}.py").write_text(f'def f{i}(x):\n    """Does {i}."""\n')
    monkeypatch.setattr(memory_module, "MAX_FILES", 3)
    monkeypatch.setattr(memory_module, "MAX_FUNCTIONS", 2)
    memory = ProjectMemory.open(root, cache_dir=None)
    assert len(memory) == 2 and memory.memory.truncated
    assert any("Python files" in note for note in memory.notes)
    assert any("documented functions" in note for note in memory.notes)


def test_adapt_summary_swaps_the_words_in_which_names_differ():
    from codemt.translate import adapt_summary

    own = {"name": "Site.download_sina"}
    assert adapt_summary("Downloads CBS videos.", "def download_cbs(url):", own) == (
        "Downloads Sina videos."
    )
    assert adapt_summary("downloads cbs videos.", "def download_cbs(url):", own) == (
        "downloads sina videos."
    )
    # Names of other shapes, or nothing to replace: no adapted text.
    assert adapt_summary("Fetches a page.", "def fetch_web_page(url):", own) == ""
    assert adapt_summary("Gets the video.", "def download_cbs(url):", own) == ""
    assert adapt_summary("Downloads CBS videos.", "", own) == ""
    # Names that share no word: no sentence about either.
    low_stock = record("low_stock", "def low_stock(items):", "    return items")
    assert adapt_summary("Read items from a file.", "def read_items(path):", low_stock) == ""
    union = record("union", "def union(self, other):", "    return self")
    assert adapt_summary(
        "Compute the intersection of two boxes.", "def intersection(a):", union
    ) == ("Compute the union of two boxes.")


def test_adapt_summary_fixes_the_article_before_a_swapped_word():
    from codemt.translate import adapt_summary

    price = {"name": "format_price"}
    assert adapt_summary("Format an amount of money.", "def format_amount(v):", price) == (
        "Format a price of money."
    )
    assert adapt_summary("An amount, formatted.", "def format_amount(v):", price) == (
        "A price, formatted."
    )
    amount = {"name": "format_amount"}
    assert adapt_summary("Format a price as a string.", "def format_price(v):", amount) == (
        "Format an amount as a string."  # the other "a" is not before the swapped word
    )
    # "a" before an unswapped word that merely starts like it stays.
    assert adapt_summary(
        "Format a pricey item.", "def format_item(v):", {"name": "format_thing"}
    ) == ("Format a pricey thing.")


def test_neighbor_summaries_are_scored_candidates(memory_model):
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    method = record("download_sina", "def download_sina(url):", "    return get_video(url)")
    sibling = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos.")
    settings = GenerationSettings(num_beams=2, max_new_tokens=6)
    records = [{**method, "neighbors": [sibling.as_record()]}]
    [offered] = translator._offered(records, [[sibling.as_record()]], "docstring", None, settings)
    alike = likeness(method, sibling.as_record())
    assert offered == [
        ("Downloads Sina videos.", settings.offer_bonus(alike, adapted=True)),
        ("Downloads CBS videos.", settings.offer_bonus(alike)),
    ]
    assert settings.offer_bonus(alike, adapted=True) == settings.offer_bonus(alike) + 1.0
    texts = [text for text, _ in offered]
    source = translator.encode(records, "docstring")[0]
    [scored] = translator._scored([source], [texts])
    assert [t for t, _ in scored] == texts and all(-50 < s < 0 for _, s in scored)
    # A very large name weight picks the candidate that names the method: the adapted one.
    heavy = GenerationSettings(num_beams=2, max_new_tokens=6, name_weight=1000)
    chosen = translator.translate_batch(records, "docstring", settings=heavy)[0]
    assert chosen.text == "Downloads Sina videos."
    assert chosen.origin == "the summary of download_cbs, its names adapted"
    off = GenerationSettings(num_beams=2, max_new_tokens=6, neighbor_candidates=False)
    assert translator._offered(records, [[sibling.as_record()]], "docstring", None, off) == [[]]
    assert translator._offered(records, [[sibling.as_record()]], "body", None, settings) == [[]]


def test_a_docstring_says_which_neighbours_summary_it_is(memory_model, monkeypatch):
    """`Translation.origin`: whose summary the docstring is (as it is, or adapted, or as a
    generated docstring is finished), by name and place; "" where the model wrote it."""
    from codemt.generation import GenerationSettings, borrowed_note
    from codemt.translate import Translator, summary_origins

    method = record("download_sina", "def download_sina(url):", "    return get_video(url)")
    cbs = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos",
                   path="pkg/site.py", line=12).as_record()  # fmt: skip
    ted = {"signature": "def download_ted(url):", "docstring": "Downloads CBS videos"}
    origins = summary_origins(method, [cbs, ted, {"signature": "", "docstring": "Orphan."}])
    assert origins["Downloads CBS videos"] == (
        "the summary of download_cbs (pkg/site.py:12), word for word"
    )  # the first neighbour's
    assert origins["Downloads CBS videos."] == origins["Downloads CBS videos"]  # finished
    assert origins["Downloads Sina videos."] == (
        "the summary of download_cbs (pkg/site.py:12), its names adapted"
    )
    # A request's context item: named by its `def` line; one with neither: not told.
    assert summary_origins(method, [ted])["Downloads CBS videos"] == (
        "the summary of download_ted, word for word"
    )
    assert "Orphan." not in origins
    assert borrowed_note("Site.download_sina", origins["Downloads Sina videos."]) == (
        "Site.download_sina: the summary of download_cbs (pkg/site.py:12), its names adapted; "
        "check that it says what download_sina does"
    )

    translator = Translator.load(memory_model, backend="torch")
    settings = GenerationSettings(num_beams=2, max_new_tokens=6)
    sibling = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos.")
    with_sibling = {**method, "neighbors": [sibling.as_record()]}
    written = translator.translate_batch(
        [with_sibling, {**method, "neighbors": []}],
        "docstring",
        settings=replace(settings, neighbor_likeness=-1000.0),  # the model's own, always
    )
    assert [w.origin for w in written] == ["", ""]
    body = translator.translate_batch([with_sibling], "body")
    assert body[0].origin == ""
    # The model's own text that happens to be a summary it read is said to be one too; in a
    # sectioned style, by the summary heading its sections; one it neither read nor was
    # offered (a third neighbour, with summaries not offered) is not.
    copied = "Downloads CBS videos."
    monkeypatch.setattr(
        Translator, "_generate", lambda self, s, n, *a, **k: [[(copied, -0.1)] * n for _ in s]
    )
    plain = replace(settings, neighbor_candidates=False)
    google = translator.translate_batch([with_sibling], "docstring", "google", settings=plain)
    assert google[0].origin == "the summary of download_cbs, word for word"
    unread = {**method, "neighbors": [Neighbor("fetch_video", "def fetch_video(url):",
                                               "Fetch it.").as_record()] * 2
              + [sibling.as_record()]}  # fmt: skip
    assert translator.translate_batch([unread], "docstring", settings=plain)[0].origin == ""
    offered = translator.translate_batch([unread], "docstring", settings=settings)[0]
    assert offered.text == "Downloads Sina videos."  # offered now, adapted, and it names
    assert offered.origin == "the summary of download_cbs, its names adapted"


def test_likeness_is_the_share_of_code_words_two_functions_have():
    """Jaccard of the words of signature and body head: 1 for the same code, 0 for none
    shared; a neighbour without a body (a request's context) is compared by signature."""
    video = record("download_sina", "def download_sina(url):", "    return get_video(url)")
    same = {"signature": "def download_sina(url):", "body": "    return get_video(url)"}
    assert likeness(video, same) == 1.0
    # {download, sina, url, get, video} against {download, cbs, url, get, video}: 4 of 6.
    sibling = {"signature": "def download_cbs(url):", "body": "    return get_video(url)"}
    assert likeness(video, sibling) == pytest.approx(4 / 6)
    far = {"signature": "def close(self):", "body": "    self.handle.close()"}
    assert likeness(video, far) == 0.0
    # Signatures alone: {download, sina, url} against {download, cbs, url}.
    assert likeness(video, {"signature": "def download_cbs(url):"}) == pytest.approx(2 / 4)
    # So is a method given by its `def` line, or beside a stub: bodies count only where
    # both have words.
    assert likeness({"signature": video["signature"]}, sibling) == pytest.approx(2 / 4)
    stub = {"signature": "def download_sina(url):", "body": "    pass"}
    assert likeness(video, stub) == 1.0
    assert likeness({}, {}) == 0.0
    assert likeness({"signature": None, "body": None}, {"signature": None}) == 0.0
    # Only the body's first lines count, as a neighbour's body is kept (BODY_CHARS).
    long = {**video, "body": video["body"] + "\n" + "    pass\n" * 100 + "    unrelated()\n"}
    assert likeness(long, same) == 1.0


def test_the_closer_a_neighbours_code_the_larger_its_summarys_bonus(memory_model):
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    method = record("download_sina", "def download_sina(url):", "    return get_video(url)")
    close = Neighbor("fetch", "def fetch(url):", "Fetch a video.", "    return get_video(url)")
    far = Neighbor("close", "def close(self):", "Close the handle.", "    self.handle.close()")
    twin = Neighbor("fetch2", "def fetch2(url):", "Fetch a video.", "    pass")
    settings = GenerationSettings()
    neighbors = [[far.as_record(), close.as_record(), twin.as_record()]]
    [offered] = translator._offered([method], neighbors, "docstring", None, settings)
    bonuses = dict(offered)
    assert list(bonuses) == ["Close the handle.", "Fetch a video."]  # each text once
    assert bonuses["Close the handle."] == settings.neighbor_bonus  # nothing alike
    # Two neighbours offer the same sentence: the closer one's bonus.
    assert bonuses["Fetch a video."] == settings.offer_bonus(likeness(method, close.as_record()))
    assert bonuses["Fetch a video."] > settings.offer_bonus(likeness(method, twin.as_record()))
    flat = replace(settings, neighbor_likeness=0.0)
    [offered] = translator._offered([method], neighbors, "docstring", None, flat)
    assert {b for _, b in offered} == {flat.neighbor_bonus}
    # Compared by what the model reads: from the signature alone, `fetch` and `fetch2`
    # ({fetch, url}, {fetch2, url}) are as alike, and the body that told them apart is unseen.
    [offered] = translator._offered([method], neighbors, "docstring", None, settings, ["signature"])
    assert dict(offered)["Fetch a video."] == settings.offer_bonus(
        likeness({"signature": method["signature"]}, close.as_record())
    )


def test_a_docstring_is_written_alone_when_no_neighbours_code_is_alike(memory_model, monkeypatch):
    """`least_likeness`: a method whose looked-up neighbours are all less alike than it is
    written as without memory (nothing read, nothing offered, the alone beams); one with
    an alike neighbour reads them all. Bodies read their neighbours whatever they are."""
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator, alike_enough

    translator = Translator.load(memory_model, backend="torch")
    method = record("download_sina", "def download_sina(url):", "    return get_video(url)")
    far = Neighbor("close", "def close(self):", "Close the handle.", "    self.handle.close()")
    close = Neighbor("fetch", "def fetch(url):", "Fetch a video.", "    return get_video(url)")
    settings = GenerationSettings(num_beams=2, max_new_tokens=6)
    assert not alike_enough(method, [far.as_record()], settings)
    assert alike_enough(method, [far.as_record(), close.as_record()], settings)
    assert alike_enough(method, [far.as_record()], replace(settings, least_likeness=0.0))
    assert not alike_enough(method, [], replace(settings, least_likeness=0.0))
    # Compared by what the model reads: by signature and body, {download, sina, url, get,
    # video} and {fetch, url, get, video}, 3 of 6; by signature alone, 1 of 4.
    higher = replace(settings, least_likeness=0.3)
    assert alike_enough(method, [close.as_record()], higher)
    assert not alike_enough(method, [close.as_record()], higher, ["signature"])

    read, scored = [], []
    encode, score = Translator.encode, Translator._scored

    def spy(self, methods, target, style=None, **kwargs):
        read.extend(len(n) for n in kwargs["neighbors"])
        return encode(self, methods, target, style, **kwargs)

    monkeypatch.setattr(Translator, "encode", spy)
    monkeypatch.setattr(
        Translator, "_scored", lambda self, s, t: scored.extend(t) or score(self, s, t)
    )
    every = replace(settings, neighbor_likeness=100.0)  # every offered summary is scored
    unlike = {**method, "neighbors": [far.as_record()]}
    written = translator.translate_batch([unlike], "docstring", settings=every)[0]
    by_itself = {**method, "neighbors": []}
    assert written == translator.translate_batch([by_itself], "docstring", settings=every)[0]
    assert read == [0, 0] and scored == [[], []]  # nothing read, nothing offered
    read.clear(), scored.clear()
    alike = {**method, "neighbors": [far.as_record(), close.as_record()]}
    translator.translate_batch([alike], "docstring", settings=every)
    assert read == [2] and "Fetch a video." in scored[0]
    read.clear()
    # The features compared are those the model reads (`sources`).
    as_read = replace(every, least_likeness=0.3)
    translator.translate_batch([{**method, "neighbors": [close.as_record()]}], "docstring",
                               sources=["signature"], settings=as_read)  # fmt: skip
    translator.translate_batch([{**method, "neighbors": [close.as_record()]}], "docstring",
                               settings=as_read)  # fmt: skip
    assert read == [0, 1]
    read.clear()
    always = replace(settings, least_likeness=0.0)
    translator.translate_batch([unlike], "docstring", settings=always)
    translator.translate_batch([unlike], "body", sources=["signature"], settings=settings)
    assert read == [1, 1]
    # The model's inputs built apart (`encode` without neighbours given) leave them out too.
    monkeypatch.setattr(Translator, "encode", encode)
    body = "    self.handle.close()\n    self.timeout = timeout"
    shares_a_word = Neighbor("close_video", "def close_video(self, handle, timeout):",
                             "Close the video handle.", body)  # fmt: skip
    translator.memory = Memory([shares_a_word])  # found by "video", 1 word of 9 alike
    assert translator.encode([method], "docstring") == translator.encode([by_itself], "docstring")
    translator.settings = always
    assert translator.encode([method], "docstring") != translator.encode([by_itself], "docstring")
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="least_likeness"):
            GenerationSettings(least_likeness=bad)


def test_settings_beside_offered_summaries_weigh_names_by_their_own_weight():
    from codemt.generation import GenerationSettings

    settings = GenerationSettings(name_weight=2.0, memory_name_weight=4.0, memory_beams=1)
    beside = settings.with_offered_summaries()
    assert (beside.num_beams, beside.name_weight) == (1, 4.0)
    same = replace(settings, memory_name_weight=None).with_offered_summaries()
    assert same.name_weight == 2.0
    bad_values = (
        {"neighbor_likeness": float("nan")},
        {"adapted_bonus": float("inf")},
        {"memory_name_weight": -1.0},
    )
    for bad in bad_values:
        with pytest.raises(ValueError, match=next(iter(bad))):
            GenerationSettings(**bad)


def test_a_summary_that_cannot_be_chosen_is_not_scored(memory_model, monkeypatch):
    """`could_win`: an offered summary is scored only if, with the best score there is (0),
    its name coverage and bonus could beat the best generated docstring; leaving the others
    unscored chooses what scoring them all chooses."""
    from codemt.generation import Candidate, GenerationSettings, could_win
    from codemt.translate import Translator

    settings = GenerationSettings()  # name weight 2
    generated = [Candidate("Download a video.", -0.4, None, 1.0), Candidate("x", -2, None, 0)]
    words = {"download", "video"}
    assert could_win("Download the video.", 0.5, words, generated, settings)  # 2.5 >= 1.6
    assert not could_win("Fetch it.", 0.5, words, generated, settings)  # 0.5 < 1.6
    assert could_win("Fetch it.", 1.6, words, generated, settings)  # a close sibling's
    assert could_win("Fetch it.", 0.5, words, [Candidate("x", -1.2, None, 0.0)], settings)
    unnamed = GenerationSettings(name_weight=0)
    assert could_win("Fetch it.", 0.5, words, generated, unnamed)  # 0.5 >= -0.4

    translator = Translator.load(memory_model, backend="torch")
    siblings = [
        Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos."),
        Neighbor("parse_feed", "def parse_feed(text):", "Parse an RSS feed."),
    ]
    methods = [
        record(name, f"def {name}(url):", f"    return get_{name}(url)")
        for name in ("download_sina", "parse_page", "close", "read_feed")
    ]
    records = [{**m, "neighbors": [n.as_record() for n in siblings]} for m in methods]
    settings = GenerationSettings(num_beams=2, max_new_tokens=8)
    scored = []
    score = Translator._scored
    monkeypatch.setattr(
        Translator, "_scored", lambda self, s, t: scored.extend(t) or score(self, s, t)
    )
    pruned = translator.translate_batch(records, "docstring", settings=settings)
    offered = len(scored)
    monkeypatch.setattr("codemt.translate.could_win", lambda *args: True)
    scored.clear()
    every = translator.translate_batch(records, "docstring", settings=settings)
    assert [t.text for t in pruned] == [t.text for t in every]
    assert [t.score for t in pruned] == pytest.approx([t.score for t in every], abs=1e-5)
    assert sum(map(len, scored)) > offered  # some were left out, and it changed nothing


def test_docstrings_beside_offered_summaries_are_written_with_their_own_beam_width(
    memory_model, monkeypatch
):
    """`memory_beams`: methods whose neighbours' summaries are offered are generated in
    batches of their own with that width; the others, and every method when it is None
    (then in the same batches), with `num_beams`; the results in the order of the methods."""
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    sibling = Neighbor("download_cbs", "def download_cbs(url):", "Downloads CBS videos.")
    names = ("download_sina", "close", "download_ted", "read")
    records = [record(name, f"def {name}(url):", f"    return get_{name}(url)") for name in names]
    records = [
        {**r, "neighbors": [sibling.as_record()] if i % 2 == 0 else []}
        for i, r in enumerate(records)
    ]
    widths = []
    generate = Translator._generate

    def spy(self, inputs, n_return, settings, **kwargs):
        widths.append((len(inputs), settings.num_beams, n_return))
        return generate(self, inputs, n_return, settings, **kwargs)

    monkeypatch.setattr(Translator, "_generate", spy)
    settings = GenerationSettings(num_beams=3, max_new_tokens=6)
    mixed = translator.translate_batch(records, "docstring", settings=settings)
    assert sorted(widths) == [(2, 1, 1), (2, 3, 3)]
    for i, translation in enumerate(mixed):  # in order: each as it is written alone
        alone = translator.translate_batch([records[i]], "docstring", settings=settings)[0]
        assert translation.text == alone.text
    widths.clear()
    one_width = replace(settings, memory_beams=None)
    merged = translator.translate_batch(records, "docstring", settings=one_width)
    assert widths == [(4, 3, 3)]  # one width: the methods share batches again
    for i, translation in enumerate(merged):
        alone = translator.translate_batch([records[i]], "docstring", settings=one_width)[0]
        assert translation.text == alone.text
    # ... each still chosen with its own name weight (6 beside summaries, 2 alone).
    weights = []
    finish = Translator._finish

    def spy_finish(self, target, generated, words, chosen, offered=()):
        weights.append((bool(offered), chosen.name_weight))
        return finish(self, target, generated, words, chosen, offered)

    monkeypatch.setattr(Translator, "_finish", spy_finish)
    every = replace(one_width, neighbor_likeness=100.0)  # every summary could win: all scored
    translator.translate_batch(records, "docstring", settings=every)
    assert sorted(weights) == [(False, 2.0), (False, 2.0), (True, 6.0), (True, 6.0)]
    widths.clear()
    translator.translate_batch(records, "body", settings=settings)  # nothing offered
    assert widths == [(4, 3, 3)]
    with pytest.raises(ValueError, match="memory_beams must be at least 1"):
        GenerationSettings(memory_beams=0)
    sampling = GenerationSettings(num_beams=1, sample=True, num_samples=3)
    assert sampling.with_offered_summaries().num_beams == 1  # samples are drawn, not beams


def scoring_case(memory_model):
    """A translator, the sources of two methods, three texts and their token ids."""
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch")
    methods = [
        record("add", "def add(a, b):", "    return a + b"),
        record("read_config", "def read_config(path):", "    return json.load(open(path))"),
    ]
    sources = translator.encode(methods, "docstring")
    texts = ["Add two numbers.", "Read the configuration file at path.", "Return a sum."]
    targets = [translator.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    return translator, sources, texts, targets


def test_scoring_encodes_each_source_once_and_scores_as_one_pair_alone(memory_model):
    translator, sources, texts, targets = scoring_case(memory_model)
    pairs = [(sources[0], targets[0]), (sources[1], targets[1]), (sources[0], targets[2])]
    encoder = translator.model.get_encoder()
    calls = []
    hook = encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        together = translator.backend.score(pairs)
    finally:
        hook.remove()
    assert len(calls) == 1  # two sources, one batch: the encoder ran once for three targets
    alone = [translator.backend.score([pair])[0] for pair in pairs]
    assert together == pytest.approx(alone, abs=1e-4)
    assert together[0] != pytest.approx(together[2], abs=1e-3)
    # Per source, in the order given, and nothing for a source offered nothing.
    scored = translator._scored(sources, [texts[:2], []])
    assert [t for t, _ in scored[0]] == texts[:2] and scored[1] == []
    assert translator._scored(sources, [[], []]) == [[], []]


def test_scoring_after_generating_reuses_the_encoders_outputs(memory_model):
    """Generating encodes the batch once and scoring texts for the same sources starts
    from those outputs: the same scores as encoding afresh, without the encoder; a
    source that the last batch did not hold is encoded."""
    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator, sources, texts, targets = scoring_case(memory_model)
    pairs = [(sources[1], targets[1]), (sources[0], targets[0]), (sources[1], targets[2])]
    fresh = Translator.load(memory_model, backend="torch").backend.score(pairs)
    calls = []
    encoder = translator.model.get_encoder()
    hook = encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        settings = GenerationSettings(num_beams=2, max_new_tokens=4)
        translator.backend.generate(sources, 2, settings)
        assert len(calls) == 1  # generate's own encoding, passed on to the search
        reused = translator.backend.score(pairs)
        assert len(calls) == 1
        other = translator.encode(
            [record("mul", "def mul(a, b):", "    return a * b")], "docstring"
        )
        translator.backend.score([(other[0], targets[0])])
        assert len(calls) == 2
    finally:
        hook.remove()
    assert reused == pytest.approx(fresh, abs=1e-4)


def test_the_int8_backend_quantizes_the_transformer_and_generates(memory_model):
    import torch

    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    translator = Translator.load(memory_model, backend="torch-int8", device="cpu")
    assert translator.backend.name == "torch-int8"
    kinds = {type(m).__module__ for m in translator.model.modules()}
    assert any("quantized" in k for k in kinds)
    assert not any(type(m) is torch.nn.Linear for m in translator.model.encoder.modules())
    settings = GenerationSettings(num_beams=2, max_new_tokens=6)
    method = record("f", "def f(url):", "    return get(url)")
    [result] = translator.translate_batch([method], "docstring", settings=settings)
    assert result.text.strip() and result.score < 0
