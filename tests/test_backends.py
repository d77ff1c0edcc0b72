"""Which backend runs a model: `auto`'s choice and the bfloat16 backend's refusal on a CPU
without bfloat16 instructions (the CTranslate2 export: test_export.py; the int8 backend:
test_memory.py; bfloat16 against float32 on the shipped model: test_default_model.py)."""

import pytest

from codemt import backends
from codemt.backends import BackendUnavailable, select_backend
from codemt.cli import main
from codemt.model import resolve_checkpoint


@pytest.mark.parametrize(("bfloat16", "chosen"), [(True, "torch-bf16"), (False, "torch")])
def test_auto_computes_in_bfloat16_only_where_the_cpu_has_the_instructions(
    tiny_model, monkeypatch, bfloat16, chosen
):
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: bfloat16)
    checkpoint = resolve_checkpoint(tiny_model)
    assert select_backend(tiny_model) == (chosen, checkpoint)
    assert select_backend(tiny_model, "torch") == ("torch", checkpoint)


def test_bfloat16_asked_for_on_a_cpu_without_it_says_what_to_use(
    tiny_model, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    with pytest.raises(BackendUnavailable, match=r"AVX-512 BF16 or AMX.*--backend torch$"):
        select_backend(tiny_model, "torch-bf16")
    source = tmp_path / "m.py"
    source.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    command = ["translate", f"{source}:add", "--model", str(tiny_model), "--target", "docstring"]
    assert main([*command, "--backend", "torch-bf16"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use --backend torch" in err


def test_the_bf16_backend_computes_in_bfloat16_and_writes_and_scores(tiny_model, monkeypatch):
    """Opened on any CPU (where it lacks the instructions, oneDNN emulates them: slow, but
    the same arithmetic): bfloat16 weights, eager attention, docstrings and scores near
    float32's."""
    import torch

    from codemt.generation import GenerationSettings
    from codemt.translate import Translator

    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    settings = GenerationSettings(num_beams=2, max_new_tokens=8)
    fast = Translator.load(tiny_model, device="cpu", settings=settings)
    reference = Translator.load(tiny_model, backend="torch", device="cpu", settings=settings)
    assert (fast.backend.name, reference.backend.name) == ("torch-bf16", "torch")
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    assert fast.model.config._attn_implementation == "eager"
    method = {"name": "add", "signature": "def add(a, b):", "body": "    return a + b\n"}
    [written] = fast.translate_batch([method], "docstring")
    assert written.text.strip() and written.score < 0
    [source] = reference.encode([method], "docstring")
    target = reference.tokenizer.encode("Add two numbers.", add_special_tokens=False).ids
    [got], [expected] = (t.backend.score([(source, target)]) for t in (fast, reference))
    assert got == pytest.approx(expected, rel=0.05) and got != expected
