"""`codemt complete`: stubs, choosing a body that parses, safe writing, the command."""

import ast

import pytest

from codemt.cli import main
from codemt.generation import Candidate, GenerationSettings, Translation
from codemt.write.apply import read_source
from codemt.write.complete import CompleteError, complete, is_stub

STUBS = '''import math


class Circle:
\t"""A circle."""

\tdef area(self, scale: float = 1.0) -> float:
\t\t"""The area of the circle, scaled."""
\t\t...  # to do

\tdef done(self):
\t\t"""Done already."""
\t\treturn 1

\tdef bare(self):
\t\tpass
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Bodies:
    """A stand-in model that offers fixed candidate bodies, best-scored first."""

    def __init__(self, *bodies: str) -> None:
        self.bodies = bodies
        self.calls = []

    def translate_batch(self, methods, target, style=None, **options):
        self.calls.append((methods[0], target, options.get("sources")))
        candidates = [Candidate(b, -i, None) for i, b in enumerate(self.bodies)]
        return [Translation(self.bodies[0], 0.0, None, candidates)]


@pytest.mark.parametrize(
    ("body", "stub"),
    [
        ("...", True),
        ("pass", True),
        ("raise NotImplementedError", True),
        ('raise NotImplementedError("later")', True),
        ("return 1", False),
        ("raise ValueError", False),
        ("pass\n    pass", False),
    ],
)
def test_what_is_a_stub(body, stub):
    node = ast.parse(f'def f():\n    """Doc."""\n    {body}\n').body[0]
    assert is_stub(node) is stub


def test_complete_keeps_the_best_body_that_parses_in_the_files_indentation(tmp_path):
    path = tmp_path / "shapes.py"
    path.write_text(STUBS)
    model = Bodies(
        "    return (",  # best-scored, does not parse
        "    if scale < 0:\n        raise ValueError(scale)\n    return math.pi * scale",
    )
    change, body = complete(str(path), "Circle.area", model, GenerationSettings())
    record, target, sources = model.calls[0]
    assert (target, sources, record["body"]) == ("body", ("signature", "docstring"), "")
    assert body.startswith("    if scale")
    expected = STUBS.replace(
        "\t\t...  # to do\n",
        "\t\tif scale < 0:\n\t\t\traise ValueError(scale)\n\t\treturn math.pi * scale\n",
    )
    assert change.new_data.decode() == expected
    assert path.read_text() == STUBS  # nothing written yet


def test_complete_refuses_what_is_not_a_stub_and_bodies_that_do_not_parse(tmp_path):
    path = tmp_path / "shapes.py"
    path.write_text(STUBS)
    with pytest.raises(CompleteError, match="has a body already") as error:
        complete(str(path), "Circle.done", Bodies("    pass"), GenerationSettings())
    assert error.value.exit_code == 2
    with pytest.raises(CompleteError, match="has no docstring"):
        complete(str(path), "Circle.bare", Bodies("    pass"), GenerationSettings())
    with pytest.raises(CompleteError, match="the functions in it are: Circle.area"):
        complete(str(path), "Square.area", Bodies("    pass"), GenerationSettings())
    with pytest.raises(CompleteError, match="none of the 2 bodies") as error:
        complete(str(path), "Circle.area", Bodies("    return (", "  x = ]"), GenerationSettings())
    assert error.value.exit_code == 1


def generating(monkeypatch, *bodies: str) -> None:
    """The model generates `bodies`, best-scored first, for every source (the rest of the
    command, the tiny model's loading and encoding included, runs as it is)."""
    from codemt.translate import Translator

    def generate(self, sources, n_return, settings, *, words=False):
        texts = [bodies[i % len(bodies)] for i in range(n_return)]
        return [[(t, -0.1 * i) for i, t in enumerate(texts)] for _ in sources]

    monkeypatch.setattr(Translator, "_generate", generate)


def test_complete_command_shows_then_writes_the_first_body_that_parses(
    tmp_path, tiny_model, capsys, monkeypatch
):
    generating(monkeypatch, "    return (", "    return math.pi * scale ** 2", "    x = ]")
    path = tmp_path / "shapes.py"
    path.write_text(STUBS)
    model = ["--model", str(tiny_model), "--max-new-tokens", "24"]
    assert main(["complete", f"{path}:Circle.area", "--beams", "3", *model]) == 0
    out = capsys.readouterr().out
    assert path.read_text() == STUBS  # a diff by default
    assert out.startswith("--- a/")
    assert "-\t\t...  # to do" in out and "+\t\treturn math.pi * scale ** 2" in out
    assert "return (" not in out

    assert main(["complete", f"{path}:Circle.area", "--write", "--beams", "3", *model]) == 0
    new = read_source(path)
    area = new.tree.body[1].body[1]
    assert ast.get_docstring(area) == "The area of the circle, scaled."
    assert not is_stub(area)
    assert ast.unparse(area.body[1]) == "return math.pi * scale ** 2"
    assert path.read_text() == STUBS.replace("\t\t...  # to do", "\t\treturn math.pi * scale ** 2")


def test_complete_command_writes_nothing_when_no_body_parses(
    tmp_path, tiny_model, capsys, monkeypatch
):
    generating(monkeypatch, "    return (", "    x = ]")
    path = tmp_path / "shapes.py"
    path.write_text(STUBS)
    model = ["--model", str(tiny_model), "--max-new-tokens", "24"]
    assert main(["complete", f"{path}:Circle.area", "--write", "--beams", "2", *model]) == 1
    assert "parses" in capsys.readouterr().err
    assert path.read_text() == STUBS


def test_complete_command_names_what_it_cannot_find(tmp_path, tiny_model, capsys):
    path = tmp_path / "shapes.py"
    path.write_text(STUBS)
    model = ["--model", str(tiny_model), "--max-new-tokens", "24"]
    assert main(["complete", f"{path}:nothing", *model]) == 2
    assert main(["complete", str(path), *model]) == 2
    err = capsys.readouterr().err
    assert "nothing" in err and "Circle.area" in err
