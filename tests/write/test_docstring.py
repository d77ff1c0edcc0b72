"""`codemt docstring`: discovery, templates, libcst insertion, safe writing, the command."""

import ast
import io
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tokenize
from pathlib import Path

import libcst as cst
import pytest

from codemt.cli import main
from codemt.generation import Translation
from codemt.source.files import find_files
from codemt.write.apply import Paragraph, SourceError, docstring_literal, read_source
from codemt.write.docstring import DocstringSettings, document, project_style
from codemt.write.templates import Facts, Parameter, build_docstring, facts_of, parse_descriptions
from tests.conftest import without_docstrings

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_PIECES = ["textwrap.py", "shlex.py", "json"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FixedText:
    """A stand-in model: "Summary of NAME." for each function, a fixed styled docstring."""

    def __init__(self, styled: str = "") -> None:
        self.styled = styled
        self.calls: list[tuple[str, str | None, int]] = []

    def translate_batch(self, methods, target, style=None, **options):
        self.calls.append((target, style, len(methods)))
        if style not in (None, "summary"):
            return [Translation(self.styled, 0.0) for _ in methods]
        return [Translation(f"Summary of {m['name']}.", 0.0) for m in methods]


def run(paths, mode="write", generator=None, **settings):
    """Document paths with a stand-in model."""
    model = generator or FixedText()
    return document([str(p) for p in paths], DocstringSettings(**settings), mode, lambda: model)


def comments(data: bytes) -> list[str]:
    """The comment tokens of a file, in order."""
    return [
        t.string for t in tokenize.tokenize(io.BytesIO(data).readline) if t.type == tokenize.COMMENT
    ]


class _StripDocstrings(cst.CSTTransformer):
    """Removes function docstrings, keeping every comment (a test helper)."""

    def leave_FunctionDef(self, original_node, updated_node):
        body = updated_node.body
        if not isinstance(body, cst.IndentedBlock) or updated_node.get_docstring() is None:
            return updated_node
        first, rest = body.body[0], list(body.body[1:])
        if len(first.body) > 1 or first.trailing_whitespace.comment is not None:
            return updated_node  # the line holds more than the docstring
        if rest:
            # Comments above the docstring move to the statement that is now first.
            rest[0] = rest[0].with_changes(
                leading_lines=[*first.leading_lines, *rest[0].leading_lines]
            )
        else:
            rest = [cst.SimpleStatementLine([cst.Pass()], leading_lines=first.leading_lines)]
        return updated_node.with_changes(body=body.with_changes(body=rest))


def strip_docstrings(folder: Path) -> None:
    """Remove the function docstrings of every Python file under a folder, in place."""
    for path in folder.rglob("*.py"):
        module = cst.parse_module(path.read_bytes())
        path.write_bytes(module.visit(_StripDocstrings()).bytes)


def snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file under a folder and its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ text and templates


def test_docstring_literal_fits_one_line_or_wraps_in_pep257_layout():
    short = docstring_literal([Paragraph("Add two numbers.")], "    ", line_length=88)
    assert short == '"""Add two numbers."""'
    words = "word " * 30
    wrapped = docstring_literal(
        [Paragraph(words), Paragraph(""), Paragraph("Args:"), Paragraph("x: " + words, 4, 4)],
        "\t",
        line_length=60,
        newline="\r\n",
    )
    lines = wrapped.split("\r\n")
    assert lines[0].startswith('"""word') and lines[-1] == '\t"""'
    assert all(len(line.expandtabs(4)) <= 60 for line in lines)
    assert "\r\n\t    x: word" in wrapped and "\r\n\t        word" in wrapped  # hanging indent
    text = ast.literal_eval(wrapped.replace("\r\n", "\n"))
    assert " ".join(text.split()) == f"{words.strip()} Args: x: {words.strip()}"


@pytest.mark.parametrize(
    "summary", ['Say "hi".', 'Ends with a quote "', 'Has """ and \\n', "Tab\there\x01"]
)
def test_docstring_literal_escapes_what_would_break_the_literal(summary):
    for paragraphs in (
        [Paragraph(summary)],
        [Paragraph(summary), Paragraph(""), Paragraph("More.")],
    ):
        literal = docstring_literal(paragraphs, "    ", line_length=88)
        value = ast.literal_eval(literal)
        assert " ".join(value.split()).startswith(" ".join(summary.split()))


def test_facts_come_from_signature_and_body():
    tree = ast.parse(
        """
class Shelf:
    def put(self, item: str, /, count: int = 1, *rest, strict=False, **extra) -> int:
        if count < 0:
            raise ValueError("negative")
        def helper():
            raise KeyError("not ours")
        try:
            pass
        except OSError as error:
            raise error
        return count

    def items(self) -> "Iterator[str]":
        yield "a"

    @staticmethod
    def make(size):
        raise errors.ShelfError

    @property
    def size(self) -> int:
        return 3
"""
    )
    put, items, make, size = tree.body[0].body
    assert facts_of(put, is_method=True) == Facts(
        parameters=(
            Parameter("item", "str"),
            Parameter("count", "int", "1"),
            Parameter("*rest"),
            Parameter("strict", "", "False"),
            Parameter("**extra"),
        ),
        returns="int",
        raises=("ValueError",),  # not the nested function's, not a re-raised variable
    )
    assert facts_of(items, is_method=True).yields == ""  # a string annotation is not read
    assert facts_of(make, is_method=False) == Facts(
        (Parameter("size"),), raises=("errors.ShelfError",)
    )
    assert facts_of(size, is_method=True).empty


def test_sections_follow_the_code_and_take_the_models_descriptions():
    facts = Facts(
        (Parameter("path", "str"), Parameter("*args"), Parameter("n", "int", "2")),
        "bool",
        None,
        ("OSError",),
    )
    generated = """Read it.

Args:
    path (str): Where it is,
        on disk.
    invented: Not a parameter.

Returns:
    bool: Whether it worked.

Raises:
    OSError: When it cannot."""
    found = parse_descriptions(generated, "google")
    assert found.parameters == {"path": "Where it is, on disk.", "invented": "Not a parameter."}
    google = [p.text for p in build_docstring("Read a file.", facts, "google", found)]
    assert google == [
        "Read a file.",
        "",
        "Args:",
        "path (str): Where it is, on disk.",
        "*args:",
        "n (int, optional): Defaults to 2.",
        "",
        "Returns:",
        "bool: Whether it worked.",
        "",
        "Raises:",
        "OSError: When it cannot.",
    ]
    numpy_text = "Read.\n\nParameters\n----------\npath : str\n    The file to read.\n\nReturns\n-------\nbool\n    True if so."
    numpy_found = parse_descriptions(numpy_text, "numpy")
    assert numpy_found.parameters == {"path": "The file to read."}
    assert numpy_found.returns == "True if so."
    rest_found = parse_descriptions(
        ":param str path: The file to read.\n:returns: True.\n:raises OSError: If so.", "rest"
    )
    assert (rest_found.parameters, rest_found.returns, rest_found.raises) == (
        {"path": "The file to read."},
        "True.",
        {"OSError": "If so."},
    )
    rest = [p.text for p in build_docstring("Read.", facts, "rest", rest_found)]
    assert rest[2:5] == [":param path: The file to read.", ":type path: str", ":param args:"]
    marked = [p.text for p in build_docstring("Read.", facts, "google", found, placeholders=True)]
    assert marked[4:6] == [
        "*args: _description_",
        "n (int, optional): _description_. Defaults to 2.",
    ]
    # A description that only restates the name says nothing.
    empty = parse_descriptions("Do.\n\nArgs:\n    val: The value of the value.\n", "google")
    assert empty.parameters == {}
    assert build_docstring("Read.", facts, "summary") == [Paragraph("Read.")]
    assert parse_descriptions("garbage :\n----\n  : (\n", "numpy").parameters == {}


# ------------------------------------------------------------------ insertion


TABBED = """import os  # why

def f(): return 1  # one-liner


class A:
\t# tab-indented class
\tdef m(self, x):
\t\t# first comment
\t\treturn x

\tdef documented(self):
\t\t'''Has one.'''
\t\treturn 0
"""


def test_insertion_keeps_everything_else_and_follows_the_files_indentation(tmp_path):
    path = tmp_path / "tabbed.py"
    path.write_text(TABBED)
    report = run([path])
    assert (report.documented, report.already, report.errors) == (2, 1, [])
    assert path.read_text() == TABBED.replace(
        "def f(): return 1  # one-liner\n",
        'def f():  # one-liner\n\t"""Summary of f."""\n\treturn 1\n',
    ).replace("\t\t# first comment", '\t\t"""Summary of A.m."""\n\t\t# first comment')


def test_crlf_latin1_and_bom_files_round_trip(tmp_path):
    latin = tmp_path / "latin.py"
    latin.write_bytes(
        b"# -*- coding: latin-1 -*-\r\n\r\nclass C:\r\n    def name(self):\r\n"
        b"        return '\xe9t\xe9'  # caf\xe9\r\n\r\n    def more(self, a, b=2):\r\n"
        b"        return a\r\n"
    )
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbfdef f():\n    return '\xc3\xa9'\n")
    old = {p: p.read_bytes() for p in (latin, bom)}
    report = run([tmp_path], style="google")
    assert report.documented == 3 and not report.errors
    new = latin.read_bytes()
    assert b"\n" not in new.replace(b"\r\n", b"")  # every line ending still CRLF
    assert b"'\xe9t\xe9'  # caf\xe9" in new and new.startswith(b"# -*- coding: latin-1 -*-\r\n")
    assert b'        """Summary of C.more.\r\n\r\n        Args:\r\n' in new
    # Nothing to say of what f returns (no annotation, no description): no Returns.
    assert bom.read_bytes().startswith(b'\xef\xbb\xbfdef f():\n    """Summary of f."""\n')
    for path in (latin, bom):
        assert comments(path.read_bytes()) == comments(old[path])
        text = read_source(path).text
        assert without_docstrings(ast.parse(text)) == without_docstrings(read_source(path).tree)


def test_a_file_that_does_not_parse_is_reported_and_untouched(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"def f(:\n    return 1\n")
    good = tmp_path / "good.py"
    good.write_text("def g():\n    return 2\n")
    report = run([tmp_path])
    assert broken.read_bytes() == b"def f(:\n    return 1\n"
    assert [(e.path, e.line) for e in report.errors] == [(str(broken), 1)]
    assert '"""Summary of g."""' in good.read_text() and report.documented == 1


def test_overwrite_replaces_existing_docstrings(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f():\n    """Old."""  # keep me\n    return 1\n\n\ndef _g(): ...\n')
    report = run([path], overwrite=True, public_only=True)
    assert path.read_text() == (
        'def f():\n    """Summary of f."""  # keep me\n    return 1\n\n\ndef _g(): ...\n'
    )
    assert report.skipped == {"private": 1}


def test_a_docstring_in_any_language_or_one_liner_counts(tmp_path):
    path = tmp_path / "m.py"
    source = 'def h():\n    """文档。"""\n    return 3\n\n\ndef k(): """Doc."""; return 4\n'
    path.write_text(source, encoding="utf-8")
    report = run([path])
    assert (report.already, report.documented, path.read_text(encoding="utf-8")) == (2, 0, source)


def test_check_lists_functions_without_docstrings_and_loads_no_model(tmp_path, capsys):
    (tmp_path / "m.py").write_text(
        'def f():\n    """Doc."""\n\n\ndef g():\n    pass\n\n\nclass C:\n    def h(self):\n'
        "        x = 1\n        return x\n"
    )
    assert main(["docstring", "--check", str(tmp_path), "--model", str(tmp_path / "none")]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"{tmp_path / 'm.py'}:5: g has no docstring",
        f"{tmp_path / 'm.py'}:10: C.h has no docstring",
    ]
    assert "2 functions without a docstring" in out.err
    assert main(["docstring", "--check", "--min-lines", "3", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{tmp_path / 'm.py'}:10: C.h has no docstring"]


def test_diff_shows_the_change_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text("def f(x):\n    return x\n")
    report = run([path], mode="diff")
    out = capsys.readouterr().out
    assert path.read_text() == "def f(x):\n    return x\n" and report.documented == 1
    assert f"--- a/{path.as_posix().lstrip('/')}" in out and '+    """Summary of f."""\n' in out


def test_auto_style_follows_the_project(tmp_path):
    (tmp_path / "a.py").write_text(
        'def f(x):\n    """Do.\n\n    Parameters\n    ----------\n    x : int\n        X.\n    """\n'
        + "".join(f'\n\ndef g{i}():\n    """Short."""\n' for i in range(5))
        + "\n\ndef h(y):\n    return y\n"
    )
    assert project_style([read_source(tmp_path / "a.py")]) == "numpy"
    run([tmp_path], style="auto")
    assert "    Parameters\n    ----------\n    y\n" in (tmp_path / "a.py").read_text()


# ------------------------------------------------------------------ discovery


def test_discovery_skips_ignored_hidden_virtualenv_and_build_folders(tmp_path):
    for name in [
        "pkg/a.py",
        "pkg/sub/b.py",
        "pkg/notes.txt",
        "pkg/generated_pb2.py",
        "ignored.py",
        "out/c.py",
        ".hidden/d.py",
        "venv2/lib/e.py",
        "build/f.py",
        "pkg.egg-info/g.py",
        "tests/test_a.py",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "venv2" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / ".gitignore").write_text("ignored.py\nout/\n")
    settings = DocstringSettings(exclude=("*_pb2.py", "tests/"))
    expected = [tmp_path / "pkg/a.py", tmp_path / "pkg/sub/b.py"]
    assert (
        find_files([tmp_path], include=settings.include, exclude=settings.exclude) == expected
    )  # outside git: pathspec reads .gitignore
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("sub/\n")  # only git knows this one
    assert (
        find_files([tmp_path], include=settings.include, exclude=settings.exclude) == expected[:1]
    )
    # A file named on the command line is taken as it is (pre-commit names files).
    assert find_files([tmp_path / "ignored.py"], exclude=settings.exclude) == [
        tmp_path / "ignored.py"
    ]
    with pytest.raises(FileNotFoundError, match="nothing.py"):
        find_files([tmp_path / "nothing.py"])


# ------------------------------------------------------------------ safe writing


def copy_stdlib(folder: Path) -> Path:
    """Copy a few standard-library modules (real code) into a folder and strip their docstrings."""
    folder.mkdir()
    for piece in STDLIB_PIECES:
        if (STDLIB / piece).is_dir():
            shutil.copytree(
                STDLIB / piece, folder / piece, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(STDLIB / piece, folder / piece)
    strip_docstrings(folder)
    return folder


def test_a_failing_replace_leaves_every_file_old_or_new(tmp_path, monkeypatch):
    folder = copy_stdlib(tmp_path / "src")
    old = snapshot(folder)
    replace, calls = os.replace, []

    def failing_replace(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise OSError("disk full")
        replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    report = run([folder])
    assert [e.message for e in report.errors] == ["not written: disk full"]
    new = snapshot(folder)
    assert new.keys() == old.keys()  # no temporary file left behind
    changed = [p for p in old if new[p] != old[p]]
    assert len(changed) == len(calls) - 1
    for path in changed:
        assert ast.parse(new[path]) and comments(new[path]) == comments(old[path])


KILLER = """
import os, signal, sys
from codemt.write.docstring import DocstringSettings, document
from codemt.generation import Translation

class Model:
    def translate_batch(self, methods, target, style=None, **options):
        return [Translation("Summary.", 0.0) for _ in methods]

calls = []
replace = os.replace
def dying_replace(source, target):
    calls.append(target)
    if len(calls) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)
os.replace = dying_replace
document([sys.argv[1]], DocstringSettings(), "write", Model)
"""


def test_a_kill_in_the_middle_of_write_leaves_every_file_old_or_new(tmp_path):
    folder = copy_stdlib(tmp_path / "src")
    old = snapshot(folder)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(folder), "4"], cwd=root, capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    new = snapshot(folder)
    strays = [p for p in new if p not in old]
    # The file being written when the process died may leave its hidden temporary file.
    assert len(strays) <= 1 and all(
        p.name.startswith(".") and p.name.endswith(".codemt-tmp") for p in strays
    )
    changed = [p for p in old if new[p] != old[p]]
    assert len(changed) == 3
    for path in changed:
        assert without_docstrings(ast.parse(new[path]), ast.parse(old[path])) == ast.dump(
            ast.parse(old[path])
        )


# ------------------------------------------------------------------ end to end with the tiny model


def test_docstring_command_on_real_stdlib_code_with_the_tiny_model(
    tmp_path, tiny_model, capsys, monkeypatch
):
    from codemt.translate import Translator

    # The tiny model loads and encodes as any model; what it generates is fixed, so that
    # every function gets a summary and the success path is the one tested.
    def generate(self, sources, n_return, settings, *, words=False):
        return [[("Compute the result.", -0.5)] * n_return for _ in sources]

    monkeypatch.setattr(Translator, "_generate", generate)
    folder = copy_stdlib(tmp_path / "src")
    old = snapshot(folder)
    model = ["--model", str(tiny_model), "--beams", "1", "--max-new-tokens", "6"]
    assert main(["docstring", str(folder), "--check"]) == 1
    missing = capsys.readouterr().out.splitlines()
    assert len(missing) > 40

    assert main(["docstring", str(folder), *model]) == 0  # --diff is the default
    assert snapshot(folder) == old and capsys.readouterr().out.startswith("--- a/")

    assert main(["docstring", str(folder), "--write", "--style", "google", *model]) == 0
    err = capsys.readouterr().err
    assert "functions documented (google style)" in err
    new = snapshot(folder)
    assert new.keys() == old.keys()
    for path, data in old.items():
        tree = ast.parse(new[path])  # parses
        assert without_docstrings(tree, ast.parse(data)) == ast.dump(ast.parse(data)), path
        assert comments(new[path]) == comments(data), path
    assert "Compute the result." in new[next(p for p in new if new[p] != old[p])].decode()
    assert main(["docstring", str(folder), "--check"]) == 0  # every function documented
    assert capsys.readouterr().out == ""


def test_pre_commit_hooks_run_check_and_write():
    import yaml

    hooks = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml").read_text()
    )
    entries = {hook["id"]: hook["entry"] for hook in hooks}
    assert entries == {
        "codemt-docstring-check": "codemt docstring --check",
        "codemt-docstring-lint": "codemt docstring --lint",
        "codemt-docstring": "codemt docstring --write",
    }


def test_errors_name_the_file(tmp_path, capsys):
    assert main(["docstring", str(tmp_path / "missing.py")]) == 2
    assert "missing.py: no such file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="style"):
        DocstringSettings(style="fancy")
    assert str(SourceError("a.py", 3, "bad")) == "a.py:3: bad"


def test_symlink_loops_are_reported_not_fatal(tmp_path, capsys):
    (tmp_path / "good.py").write_text("def f(x):\n    return x\n")
    os.symlink(tmp_path / "b.py", tmp_path / "a.py")
    os.symlink(tmp_path / "a.py", tmp_path / "b.py")
    os.symlink(tmp_path / "x.py", tmp_path / "x.py")
    assert main(["docstring", str(tmp_path), "--check"]) == 1
    captured = capsys.readouterr()
    assert "good.py:1: f has no docstring" in captured.out
    for name in ("a.py", "b.py", "x.py"):
        assert f"{name}" in captured.err and "symbolic links" in captured.err


# ------------------------------------------------------------------ what --write keeps

UNDOCUMENTED = "def f(x):\n    return x\n"


def test_a_file_changed_while_the_model_ran_is_not_written(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(UNDOCUMENTED)
    edited = UNDOCUMENTED + "\n\ndef added(y):\n    return y\n"

    class EditingModel(FixedText):
        def translate_batch(self, methods, target, style=None, **options):
            path.write_text(edited)  # the user saves meanwhile
            return super().translate_batch(methods, target, style, **options)

    report = run([path], generator=EditingModel())
    assert path.read_text() == edited  # the user's change stands
    assert [e.message for e in report.errors] == [
        "changed since it was read: not written (run again)"
    ]


def test_write_keeps_mode_and_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.py"
    real.write_text(UNDOCUMENTED)
    real.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    report = run([link])
    assert not report.errors
    assert link.is_symlink() and link.resolve() == real
    assert ast.get_docstring(ast.parse(real.read_text()).body[0]) is not None
    assert real.stat().st_mode & 0o777 == 0o640


def test_a_file_with_hard_links_is_refused_not_split(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(UNDOCUMENTED)
    other = tmp_path / "other.py"
    os.link(path, other)
    report = run([path])
    assert path.read_text() == UNDOCUMENTED and os.path.samefile(path, other)
    assert "2 hard links" in report.errors[0].message


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_write_keeps_another_users_file_theirs(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(UNDOCUMENTED)
    os.chown(path, 4321, 4321)
    report = run([path])
    assert not report.errors
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)
    assert ast.get_docstring(ast.parse(path.read_text()).body[0]) is not None


def test_write_refuses_what_would_change_the_owner(tmp_path, monkeypatch):
    from codemt.write import atomic as writing

    path = tmp_path / "m.py"
    path.write_text(UNDOCUMENTED)
    status = path.stat()

    class Foreign:  # the file as seen when it belongs to someone else
        def __getattr__(self, name):
            return {"st_uid": status.st_uid + 1}.get(name, getattr(status, name))

    def no_chown(*args):
        raise PermissionError("not permitted")

    monkeypatch.setattr(os, "chown", no_chown)
    with pytest.raises(writing.NotWritten, match="belongs to user"):
        writing._keep_owner(str(path), path, Foreign())


def test_a_killed_runs_temporary_file_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(UNDOCUMENTED)
    stale = tmp_path / ".m.py.x1y2.codemt-tmp"
    stale.write_text("half a file")
    os.utime(stale, (1, 1))
    fresh = tmp_path / ".m.py.z3.codemt-tmp"  # another run's, being written now
    fresh.write_text("")
    assert not run([path]).errors
    assert not stale.exists() and fresh.exists()


def test_write_never_follows_a_link_out_of_the_given_paths(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text(UNDOCUMENTED)
    project = tmp_path / "project"
    project.mkdir()
    (project / "own.py").write_text(UNDOCUMENTED)
    (project / "escape.py").symlink_to(outside)
    (project / "inner.py").symlink_to(project / "own.py")  # a link inside: the same file
    report = run([project])
    assert outside.read_text() == UNDOCUMENTED
    assert [e.path for e in report.errors] == [str(project / "escape.py")]
    assert "outside the paths given" in report.errors[0].message
    assert ast.get_docstring(ast.parse((project / "own.py").read_text()).body[0])
    # Named on the command line, the link's file is the user's choice.
    assert not run([project / "escape.py"]).errors
    assert ast.get_docstring(ast.parse(outside.read_text()).body[0])
