"""The guard of every in-place edit, `codemt.write.apply.verify_edit`: an edit may change the
docstrings (or the drafted body) of the functions it names, and nothing else."""

from pathlib import Path

import pytest

from codemt.write.apply import SourceError, read_source, unified_diff, verify_edit

SOURCE = '''import os


def area(width, height):
    """Old summary."""
    return width * height


class Box:
    def volume(self, depth):
        ...

    def label(self):
        return "box"
'''


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "shapes.py"
    path.write_text(SOURCE)
    return read_source(path)


def index(source, name: str) -> int:
    return next(f.index for f in source.functions if f.name == name)


def check(source, new: str, names: list[str], changed: str = "docstring") -> None:
    verify_edit(source, new.encode(), [index(source, n) for n in names], changed)


def test_docstring_edits_of_the_named_functions_pass(source):
    new = SOURCE.replace('"""Old summary."""', '"""Area of a rectangle."""')
    check(source, new, ["area"])
    added = new.replace("    def label(self):\n", '    def label(self):\n        """Label."""\n')
    check(source, added, ["area", "Box.label"])


@pytest.mark.parametrize(
    ("what", "new"),
    [
        (
            "a body changed under a docstring edit",
            SOURCE.replace('"""Old summary."""', '"""New."""').replace(
                "return width * height", "return width + height"
            ),
        ),
        ("a body changed alone", SOURCE.replace("return width * height", "return 0")),
        ("a statement added", SOURCE.replace("    return width", "    print()\n    return width")),
        ("an argument renamed", SOURCE.replace("def area(width,", "def area(w,")),
        ("an import changed", SOURCE.replace("import os", "import sys")),
        ("a decorator added", SOURCE.replace("def area", "@staticmethod\ndef area")),
        (
            "a function swapped for another of the same count",
            SOURCE.replace('return "box"', 'return "crate"'),
        ),
        ("a docstring removed from code", SOURCE.replace('"""Old summary."""\n    ', "")),
    ],
)
def test_anything_but_the_named_docstrings_is_refused(source, what, new):
    if what == "a docstring removed from code":
        check(source, new, ["area"])  # the named function's docstring may go
        with pytest.raises(SourceError, match="change more than docstrings"):
            check(source, new, ["Box.label"])  # not under another's name
        return
    with pytest.raises(SourceError, match="change more than docstrings"):
        check(source, new, ["area", "Box.label"])


def test_a_docstring_edit_of_a_function_not_named_is_refused(source):
    new = SOURCE.replace("    def label(self):\n", '    def label(self):\n        """Label."""\n')
    with pytest.raises(SourceError, match="change more than docstrings"):
        check(source, new, ["area"])


def test_body_edits_may_change_the_named_body_alone(source):
    drafted = SOURCE.replace("        ...\n", "        return self.area * depth\n")
    check(source, drafted, ["Box.volume"], "body")
    with pytest.raises(SourceError, match="change more than bodys"):
        check(source, drafted, ["Box.label"], "body")
    both = drafted.replace('return "box"', 'return "crate"')
    with pytest.raises(SourceError, match="change more than bodys"):
        check(source, both, ["Box.volume"], "body")
    renamed = drafted.replace("def volume(self, depth)", "def volume(self, d)")
    with pytest.raises(SourceError, match="change more than bodys"):
        check(source, renamed, ["Box.volume"], "body")


def test_an_edit_that_does_not_parse_or_decode_is_refused(source):
    with pytest.raises(SourceError, match="would not parse"):
        check(source, SOURCE.replace("return width * height", "return width *"), ["area"])
    with pytest.raises(SourceError, match="cannot be read"):
        verify_edit(source, b"\xff\xfe\x00def", [0], "docstring")


def test_a_function_added_or_removed_is_refused(source):
    added = SOURCE + "\n\ndef extra():\n    pass\n"
    with pytest.raises(SourceError, match="change more than docstrings"):
        check(source, added, ["area"])
    removed = SOURCE.replace('    def label(self):\n        return "box"\n', "")
    with pytest.raises(SourceError, match="change more than docstrings"):
        check(source, removed, ["area"])


def test_the_guard_reads_the_file_it_was_given(tmp_path: Path):
    # Latin-1 with a coding line: the edited bytes are decoded as the file was.
    path = tmp_path / "old.py"
    text = '# -*- coding: latin-1 -*-\ndef f():\n    """Caf\xe9."""\n    return "\xe9"\n'
    path.write_bytes(text.encode("latin-1"))
    source = read_source(path)
    new = text.replace("Caf\xe9.", "Le caf\xe9.").encode("latin-1")
    verify_edit(source, new, [0], "docstring")
    with pytest.raises(SourceError):
        verify_edit(source, new.replace(b'"\xe9"', b'"e"'), [0], "docstring")


def test_hunk_headers_name_the_function_of_their_first_change():
    old = "".join(f"x{i} = {i}\n" for i in range(8)) + (
        "class Box:\n    def volume(self, depth):\n        return depth\n"
        + "".join(f"y{i} = {i}\n" for i in range(8))
        + "def area(w):\n    return w\n"
    )
    new = old.replace("        return depth\n", '        """Volume."""\n        return depth\n')
    new = new.replace("def area(w):\n", 'def area(w):\n    """Area."""\n')
    headers = [
        line for line in unified_diff("m.py", old, new).splitlines() if line.startswith("@@")
    ]
    assert headers == [
        "@@ -8,6 +8,7 @@ def volume(self, depth):",
        "@@ -18,4 +19,5 @@ def area(w):",
    ]
    top = unified_diff("m.py", "a = 1\n", "a = 2\n").splitlines()[2]
    assert top == "@@ -1 +1 @@"  # nothing above: no name
