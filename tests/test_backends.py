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


def test_the_cpus_bfloat16_is_read_from_linux_flags_as_torch_reads_it(tmp_path, monkeypatch):
    """Without importing torch where Linux lists the flags; the same answer as torch's."""
    import torch

    from codemt import model

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n")
    assert model._linux_cpu_flags(cpuinfo) >= {"avx512f", "avx512_bf16"}
    cpuinfo.write_text("vmx flags\t: ept avx512_bf16\nflags\t\t:\n")  # not the CPU's flags
    assert model._linux_cpu_flags(cpuinfo) == set()
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # Arm: no x86 flags
    assert model._linux_cpu_flags(cpuinfo) is None
    assert model._linux_cpu_flags(tmp_path / "none") is None
    monkeypatch.setattr(model.platform, "machine", lambda: "x86_64")
    for flags, native in [({"avx2"}, False), ({"amx_bf16", "avx2"}, True)]:
        monkeypatch.setattr(model, "_linux_cpu_flags", lambda flags=flags: flags)
        assert model.cpu_has_bf16() is native
    monkeypatch.setattr(model.platform, "machine", lambda: "arm64")  # torch asks x86 only
    assert model.cpu_has_bf16() is False
    monkeypatch.undo()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    by_torch = any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    assert model.cpu_has_bf16() == by_torch


@pytest.mark.parametrize("name", ["torch-bf16", "torch-int8"])
def test_off_the_cpu_a_converting_backend_is_the_float_model(tiny_model, monkeypatch, name):
    """A GPU runs the float model as it is (a device other than the CPU stands in for one)."""
    import torch

    from codemt.backends import BACKENDS
    from codemt.examples import Vocabulary
    from codemt.model import resolve_checkpoint
    from codemt.tokenizer import load_tokenizer

    folder = resolve_checkpoint(tiny_model)
    tokenizer = load_tokenizer(folder)
    opened = BACKENDS[name].open(
        folder, tokenizer, Vocabulary.from_tokenizer(tokenizer), device="meta"
    )
    assert opened.name == "torch" and opened.device == torch.device("meta")
    assert {p.dtype for p in opened.model.parameters()} == {torch.float32}
