"""`codemt export` and the ctranslate2 backend: parity with torch, selection, errors."""

import json
import shutil
import sys

import pytest
import torch

pytest.importorskip("ctranslate2")

from codemt.backends import (  # noqa: E402
    BackendUnavailable,
    cpu_has_bf16,
    select_backend,
)
from codemt.cli import main  # noqa: E402
from codemt.corpus import iter_records  # noqa: E402
from codemt.export import export_ctranslate2  # noqa: E402
from codemt.generation import GenerationSettings, choose_candidate  # noqa: E402
from codemt.translate import Translator  # noqa: E402

GREEDY = GenerationSettings(num_beams=1, max_new_tokens=24)
BEAMS = GenerationSettings(num_beams=4, max_new_tokens=16)
# What `auto` takes for a checkpoint without an export on this CPU.
WITHOUT_EXPORT = "torch-bf16" if cpu_has_bf16() else "torch"


@pytest.fixture(autouse=True)
def one_thread():
    """A tiny model gains nothing from threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tiny_model):
    return tiny_model / (tiny_model / "latest").read_text().strip()


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    """float32 and int8 exports of the tiny model, outside its checkpoint folder."""
    root = tmp_path_factory.mktemp("exports")
    return {q: export_ctranslate2(checkpoint, root / q, q) for q in ("float32", "int8")}


@pytest.fixture(scope="module")
def torch_translator(checkpoint):
    return Translator.load(checkpoint, backend="torch", device="cpu")


@pytest.fixture(scope="module")
def methods(small_corpus):
    """Methods of the test split with a signature, a docstring and a body."""
    records = iter_records(small_corpus, "test")
    return [r for r in records if r["signature"] and r["docstring"] and r["body"]][:10]


def test_export_folder_holds_what_loading_needs(exports, checkpoint):
    for quantization, folder in exports.items():
        for name in ("model.bin", "tokenizer.json", "codemt.json"):
            assert (folder / name).is_file(), name
        meta = json.loads((folder / "codemt.json").read_text())
        assert meta["export"]["format"] == "ctranslate2"
        assert meta["export"]["quantization"] == quantization
        assert meta["export"]["source"] == str(checkpoint)
        assert meta["preset"] == "tiny"  # the checkpoint's own config travels along


def test_float32_outputs_match_torch(exports, torch_translator, methods):
    """Token ids and scores, greedy and every beam, for docstring and body targets."""
    fast = Translator.load(exports["float32"])
    assert fast.backend.name == "ctranslate2" and torch_translator.backend.name == "torch"
    assert fast.parameters == torch_translator.parameters
    eos_seen = 0
    for target in ("docstring", "body"):
        sources = torch_translator.encode(methods, target)
        assert fast.encode(methods, target) == sources
        for settings in (GREEDY, BEAMS):
            n = settings.num_beams
            expected = torch_translator.backend.generate(sources, n, settings)
            got = fast.backend.generate(sources, n, settings)
            for want, have in zip(expected, got, strict=True):
                assert [h.ids for h in have] == [h.ids for h in want]
                assert [h.score for h in have] == pytest.approx([h.score for h in want], abs=1e-4)
                eos_seen += sum(len(h.ids) < settings.max_new_tokens for h in want)
    assert eos_seen  # some outputs ended with </s>: their scores count it alike


def test_int8_generates_beams_with_scores_and_syntax_aware_choice(exports, methods):
    fast = Translator.load(exports["int8"], device="cpu", threads=1)
    assert fast.meta["export"]["quantization"] == "int8"
    docstrings = fast.translate_batch(methods[:3], "docstring", settings=GREEDY)
    assert all(isinstance(t.text, str) and t.parsed is None for t in docstrings)

    bodies = fast.translate_batch(methods[:3], "body", settings=BEAMS)
    for body in bodies:
        assert len(body.candidates) == 4
        scores = [c.score for c in body.candidates]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
        assert all(c.parsed is not None for c in body.candidates)
        assert (body.text, body.score) == (choose_candidate(body.candidates).text, body.score)
        assert body.parsed == any(c.parsed for c in body.candidates)


def test_sampling_draws_several_reproducible_candidates(exports, methods):
    fast = Translator.load(exports["int8"])
    sample = GenerationSettings(
        num_beams=1, sample=True, num_samples=3, seed=5, top_p=0.9, max_new_tokens=12
    )
    first = fast.translate_batch(methods[:2], "body", settings=sample)
    assert [len(t.candidates) for t in first] == [3, 3]
    assert first == fast.translate_batch(methods[:2], "body", settings=sample)


def test_auto_picks_the_export_when_there_is_one(tiny_model, checkpoint, exports, tmp_path):
    assert select_backend(checkpoint) == (WITHOUT_EXPORT, checkpoint)
    assert select_backend(exports["int8"]) == ("ctranslate2", exports["int8"])
    # An export in the checkpoint's ctranslate2/ subfolder, the default --out, is found from
    # the checkpoint and from its run folder.
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    copied = run / checkpoint.name
    assert main(["export", str(run), "--quantization", "int8"]) == 0
    assert select_backend(run) == ("ctranslate2", copied / "ctranslate2")
    assert select_backend(copied) == ("ctranslate2", copied / "ctranslate2")
    assert select_backend(run, "torch") == ("torch", copied)


def test_unavailable_backends_say_what_to_do(checkpoint, exports, monkeypatch, tmp_path):
    with pytest.raises(BackendUnavailable, match="codemt export .* --out .*ctranslate2"):
        Translator.load(checkpoint, backend="ctranslate2")
    with pytest.raises(BackendUnavailable, match="no PyTorch weights.*use the ctranslate2"):
        Translator.load(exports["float32"], backend="torch")
    with pytest.raises(FileNotFoundError, match="not a codemt checkpoint"):
        Translator.load(tmp_path, backend="ctranslate2")
    with pytest.raises(ValueError, match="unknown backend"):
        select_backend(checkpoint, "onnx")

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(BackendUnavailable, match=r"pip install 'codemt\[fast\]'"):
        Translator.load(exports["int8"], backend="ctranslate2")
    with pytest.raises(BackendUnavailable, match=r"CTranslate2 export; .*codemt\[fast\]"):
        Translator.load(exports["int8"])  # auto: nothing else can run an export
    assert select_backend(checkpoint) == (WITHOUT_EXPORT, checkpoint)
    with pytest.raises(BackendUnavailable, match="needs ctranslate2"):
        export_ctranslate2(checkpoint, tmp_path / "out")


def test_export_refuses_bad_requests(checkpoint, exports, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        export_ctranslate2(checkpoint, tmp_path / "out", "int4")
    taken = tmp_path / "taken"
    taken.mkdir()
    assert main(["export", str(checkpoint), "--out", str(taken)]) == 2
    assert "is not a CTranslate2 export; choose another --out" in capsys.readouterr().err
    with pytest.raises(ValueError, match="already a CTranslate2 export"):
        export_ctranslate2(exports["int8"], tmp_path / "out")


def test_commands_take_a_backend(checkpoint, exports, tmp_path, capsys):
    path = tmp_path / "module.py"
    path.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    command = ["translate", f"{path}:add", "--target", "docstring", "--max-new-tokens", "8"]
    assert main([*command, "--model", str(exports["int8"]), "--backend", "ctranslate2"]) == 0
    assert capsys.readouterr().out.strip()
    assert main([*command, "--model", str(checkpoint), "--backend", "ctranslate2"]) == 2
    assert "codemt export" in capsys.readouterr().err
    from codemt.cli import build_parser

    evaluate = ["evaluate", str(checkpoint), "--data", "x.jsonl", "--backend", "torch"]
    assert build_parser().parse_args(evaluate).backend == "torch"
    for command in (["serve"], ["lsp"]):
        assert build_parser().parse_args([*command, "--backend", "torch"]).backend == "torch"


def test_docstring_and_complete_run_on_the_export(checkpoint, exports, tmp_path, capsys):
    path = tmp_path / "module.py"
    source = 'def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    """Multiply."""\n    ...\n'
    path.write_text(source, encoding="utf-8")
    fast = ["--model", str(exports["int8"]), "--backend", "ctranslate2"]
    assert main(["docstring", str(path), "--max-new-tokens", "8", *fast]) == 0
    assert '+    """' in capsys.readouterr().out
    main(["complete", f"{path}:mul", "--max-new-tokens", "16", *fast])
    captured = capsys.readouterr()
    assert "codemt export" not in captured.err  # the export was loaded, whatever it wrote
    assert (
        main(["docstring", str(path), "--model", str(checkpoint), "--backend", "ctranslate2"]) == 2
    )
    assert "codemt export" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == source
