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
