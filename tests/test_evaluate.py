"""Metrics, baselines, data loading and the `codemt evaluate` and `codemt score` commands."""

import json
import os
from pathlib import Path

import pytest

from codemt.cli import main
from codemt.evaluate import (
    BASELINES,
    escape_line,
    evaluate_baselines,
    load_codesearchnet,
    load_data,
    mode_key,
    name_words,
    parse_mode,
    read_lines,
    unescape_line,
    write_lines,
)

# Rows written for these tests in CodeSearchNet/CodeXGLUE's layout (two repositories).
ROWS = Path(__file__).parent / "fixtures" / "codesearchnet_rows.jsonl"


def codexglue_sample() -> Path | None:
    """The CodeXGLUE sample the design measures against: $CODEMT_BENCHMARKS, or a
    `shared/benchmarks` folder beside the repository or any folder above it."""
    name = "codexglue_python_valid_sample.jsonl"
    folders = [Path(os.environ["CODEMT_BENCHMARKS"])] if "CODEMT_BENCHMARKS" in os.environ else []
    folders += [parent / "shared" / "benchmarks" for parent in Path(__file__).resolve().parents]
    return next((f / name for f in folders if (f / name).is_file()), None)


CODEXGLUE_SAMPLE = codexglue_sample()
needs_sample = pytest.mark.skipif(
    CODEXGLUE_SAMPLE is None,
    reason="the CodeXGLUE sample is not there (set CODEMT_BENCHMARKS to its folder)",
)
MODE_METRICS = {
    "n", "smoothed_bleu4", "bleu", "rouge1_p", "rouge1_r", "rouge1_f", "rouge2_p", "rouge2_r",
    "rouge2_f", "rougeL_p", "rougeL_r", "rougeL_f", "exact_match",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_name_words():
    assert name_words("save_act") == "save act"
    assert name_words("ActWrapper.save_act") == "save act"
    assert name_words("getHTTPResponse_code2") == "get http response code 2"
    assert name_words("__init__") == "init"


def test_modes_are_named_by_target_when_all_other_features_are_sources():
    assert parse_mode("docstring").name == "signature+body->docstring"
    assert mode_key(parse_mode("body")) == "body"
    assert mode_key(parse_mode("signature+body->docstring")) == "docstring"
    assert mode_key(parse_mode("body->docstring")) == "body->docstring"


def test_prediction_files_round_trip(tmp_path):
    texts = ["one line", "two\nlines", "a back\\slash \\n literal", "", "tab\there"]
    assert [unescape_line(escape_line(t)) for t in texts] == texts
    assert all("\n" not in escape_line(t) for t in texts)
    write_lines(tmp_path / "p.txt", texts)
    assert read_lines(tmp_path / "p.txt") == texts


# ------------------------------------------------------------------ CodeXGLUE data


def test_codesearchnet_jsonl_loads_as_codexglue_reads_it(tmp_path):
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    data = load_codesearchnet(ROWS)
    assert len(data.records) == len(rows) == 8 and data.skipped == 0
    first, refs = data.records[0], data.references[0]
    assert first["name"] == "DiskCache.save_entry" and first["class_name"] == "DiskCache"
    assert first["repo"] == "acme/storage" and first["path"] == "storage/cache.py"
    assert first["signature"] == "def save_entry(self, key, value=None):"
    # The reference is the docstring's tokens joined, as CodeXGLUE builds it: no backticks.
    assert refs["docstring"] == "Save an entry to the cache file located at key"
    assert refs["docstring"] == " ".join(rows[0]["docstring_tokens"])
    # The extractor separated the docstring: it is no source of docstring generation.
    assert "Save an entry" not in first["body"]
    assert first["body"].startswith("    if value is None:")
    assert refs["body"] == first["body"]
    assert data.records[3]["class_name"] in ("", None)  # a function, not a method
    # A row whose code does not parse is skipped and counted.
    broken = {**rows[0], "code": "def broken(:\n    pass", "original_string": ""}
    path = tmp_path / "rows.jsonl"
    path.write_text(ROWS.read_text() + json.dumps(broken) + "\n")
    assert load_codesearchnet(path).skipped == 1


def test_baselines_name_the_words_and_take_the_nearest_docstring_of_the_same_repo():
    data = load_codesearchnet(ROWS)
    assert BASELINES["name_words"]("DiskCache.save_entry") == "save entry"
    assert BASELINES["returns_name_words"]("DiskCache.save_entry") == "Returns the save entry."
    chosen = data.examples(parse_mode("docstring"), None)
    nearest = data.with_neighbors(chosen, "docstring", 1)
    found = {
        data.records[i]["name"]: n["neighbors"][0].name
        for i, n in zip(chosen, nearest, strict=True)
    }
    assert found["DiskCache.save_entry"] == "DiskCache.load_entry"
    assert found["count_words"] == "count_lines"
    for i, rows in zip(chosen, nearest, strict=True):  # leave-one-out, same repository
        assert rows["neighbors"][0].name != data.records[i]["name"]
        names = [r["name"] for r in data.records if r["repo"] == data.records[i]["repo"]]
        assert rows["neighbors"][0].name in names
    baselines = evaluate_baselines(data)
    assert set(baselines) == {"name_words", "returns_name_words", "nearest_docstring"}
    scores = {k: v["smoothed_bleu4"] for k, v in baselines.items()}
    assert scores["name_words"] < scores["returns_name_words"] < scores["nearest_docstring"]


@needs_sample
def test_trivial_baselines_reproduce_the_published_levels():
    """The name baselines score as the design doc says: about 7.5 and 14.4 smoothed BLEU-4,
    22 ROUGE-L F, on the 120 CodeXGLUE rows."""
    baselines = evaluate_baselines(load_codesearchnet(CODEXGLUE_SAMPLE))
    assert baselines["name_words"]["smoothed_bleu4"] == pytest.approx(7.47, abs=0.01)
    assert baselines["returns_name_words"]["smoothed_bleu4"] == pytest.approx(14.44, abs=0.01)
    assert baselines["name_words"]["rougeL_f"] == pytest.approx(21.93, abs=0.01)
    assert baselines["returns_name_words"]["rougeL_f"] == pytest.approx(22.49, abs=0.01)


# ------------------------------------------------------------------ the commands


def test_evaluate_command_on_codexglue_jsonl(tiny_model, tmp_path, capsys):
    out = tmp_path / "eval"
    command = ["evaluate", str(tiny_model), "--data", str(ROWS), "--limit", "6"]
    command += ["--beams", "2", "--max-new-tokens", "12", "--out", str(out), "--no-progress"]
    assert main([*command, "--compare", str(tiny_model)]) == 0
    table = capsys.readouterr().out
    assert "baseline:name_words" in table and "baseline:returns_name_words" in table

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"].startswith(str(tiny_model))
    assert set(metrics["modes"]) == {"docstring", "body"}
    assert set(metrics["modes"]["docstring"]) == MODE_METRICS | {"seconds"}
    assert set(metrics["modes"]["body"]) == MODE_METRICS | {
        "seconds", "parse_rate", "top_beam_parse_rate"
    }  # fmt: skip
    for mode in metrics["modes"].values():
        assert mode["n"] == 6
        assert all(0 <= v <= 100 for k, v in mode.items() if k not in ("n", "seconds"))
    baselines = metrics["baselines"]["docstring"]
    assert set(baselines) == {"name_words", "returns_name_words", "nearest_docstring"}
    assert metrics["memory"] == "none"
    assert metrics["corpus_digest"] is None and metrics["same_corpus"] is None  # no corpus
    assert baselines["name_words"]["n"] == 6
    assert metrics["compare"]["modes"]["docstring"]["n"] == 6

    for mode in ("docstring", "body"):
        predictions = read_lines(out / f"{mode}.predictions.txt")
        references = read_lines(out / f"{mode}.references.txt")
        assert len(predictions) == len(references) == 6
        assert (out / "compare" / f"{mode}.predictions.txt").is_file()
    data = load_data(ROWS)
    first = data.examples(parse_mode("docstring"), 6)[0]  # the limit samples the file
    assert read_lines(out / "docstring.references.txt")[0] == data.references[first]["docstring"]

    # `codemt score` gives the same numbers from the files.
    score = ["score", "--predictions", str(out / "docstring.predictions.txt")]
    assert main([*score, "--references", str(out / "docstring.references.txt"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    docstring = metrics["modes"]["docstring"]
    assert scored == pytest.approx({k: v for k, v in docstring.items() if k != "seconds"})


def test_evaluate_command_on_a_corpus_test_split(tiny_model, small_corpus, capsys):
    command = ["evaluate", str(tiny_model), "--data", str(small_corpus), "--limit", "3"]
    command += ["--beams", "2", "--max-new-tokens", "8", "--no-progress"]
    assert main([*command, "--modes", "docstring", "body", "signature", "body->docstring"]) == 0
    table = capsys.readouterr().out.split("\n")
    modes = {line.split()[0] for line in table[1:] if line.strip()}
    assert modes == {"docstring", "body", "signature", "body->docstring"}


def test_a_corpus_other_than_the_models_is_said_not_to_be_held_out(
    tiny_model, small_corpus, tmp_path, capsys
):
    """A corpus mined again (here: a digest other than the one the model records) may hold
    training methods in its test split: the command says so, and metrics.json records it."""
    import shutil

    from codemt.corpus import Corpus
    from codemt.model import resolve_checkpoint

    model = tmp_path / "model"
    shutil.copytree(resolve_checkpoint(tiny_model), model)
    meta_file = model / "codemt.json"
    digest = Corpus.open(small_corpus).digest
    command = ["evaluate", str(model), "--data", str(small_corpus), "--modes", "docstring"]
    command += ["--limit", "2", "--beams", "1", "--max-new-tokens", "4", "--no-progress"]
    other = "0123456789abcdef"
    meta = json.loads(meta_file.read_text())
    for n, (recorded, split, same) in enumerate([
        ({"corpus_digest": digest}, "test", True),
        ({"corpus_digest": other}, "test", False),
        ({"corpus_digest": other}, "train", False),  # trained on: no held-out numbers expected
        # An earlier stage on another corpus; a start whose corpora are not known.
        ({"corpus_digest": digest, "corpus_digests": [other, digest], "init": "a"}, "test", False),
        ({"corpus_digest": digest, "corpus_digests": [digest, digest], "init": "a"}, "test", True),
        ({"corpus_digest": digest, "corpus_digests": None, "init": "a"}, "test", None),
    ]):  # fmt: skip
        meta_file.write_text(json.dumps({**meta, **recorded}))
        out = tmp_path / str(n)
        assert main([*command, "--split", split, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("may not be held out" in err) == (same is False and split != "train"), err
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["corpus_digest"] == digest and metrics["same_corpus"] is same
    # A second model compared: its own answer too.
    out = tmp_path / "compare"
    assert main([*command, "--compare", str(tiny_model), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compare"]["same_corpus"] is None  # the tiny model records no corpus
    # A damaged manifest: the rows are still evaluated, with no digest to compare.
    broken = tmp_path / "broken"
    shutil.copytree(small_corpus, broken)
    (broken / "manifest.json").write_text("{not json")
    assert main([*command[:3], str(broken), *command[4:], "--out", str(tmp_path / "b")]) == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["corpus_digest"] is None and metrics["same_corpus"] is None


def test_command_errors_exit_2(tiny_model, tmp_path, capsys):
    assert main(["evaluate", str(tiny_model), "--data", str(tmp_path / "nothing")]) == 2
    assert "neither a corpus folder" in capsys.readouterr().err
    write_lines(tmp_path / "p.txt", ["a", "b"])
    write_lines(tmp_path / "r.txt", ["a"])
    command = ["score", "--predictions", str(tmp_path / "p.txt")]
    assert main([*command, "--references", str(tmp_path / "r.txt")]) == 2
    assert "2 predictions but 1 references" in capsys.readouterr().err


def test_result_files_are_named_without_shell_metacharacters():
    from codemt.evaluate import result_file_stem

    assert result_file_stem("signature+body->docstring") == "signature+body_to_docstring"
    assert result_file_stem("docstring") == "docstring"


def test_a_limit_samples_across_the_whole_split():
    from codemt.evaluate import EvalData

    records = [
        {"name": f"f{i}", "signature": f"def f{i}():", "body": "    pass", "repo": f"r{i // 10}"}
        for i in range(100)
    ]
    references = [{"docstring": "Do it.", "body": "pass", "signature": "def f():"}] * 100
    data = EvalData("synthetic", records, references)
    mode = parse_mode("docstring")
    chosen = data.examples(mode, 10)
    assert len(chosen) == 10 and chosen == sorted(chosen) == data.examples(mode, 10)
    assert len({records[i]["repo"] for i in chosen}) > 3  # not the first project's ten
    assert data.examples(mode) == list(range(100)) == data.examples(mode, 500)
