"""Docstrings that stay true: `codemt docstring --lint` and `--update` on hand-written
before/after files of each style and each kind of change, and on odd literals."""

import ast
import re
import subprocess
import sys
import textwrap

import pytest

from codemt.source.sections import Unreadable, read_docstring, render
from codemt.write.docstring import DocstringSettings, document
from codemt.write.templates import Descriptions


def no_model():
    raise AssertionError("an update without descriptions loads no model")


class Summaries:
    """A model that writes "Written." for every function without a docstring."""

    def translate_batch(self, records, target, style=None, **options):
        from codemt.generation import Translation

        return [Translation("Written.", -1.0) for _ in records]


def updated(tmp_path, before: str, *, encoding="utf-8", newline="\n", model=no_model) -> str:
    """The file after `codemt docstring --update --write --no-descriptions`."""
    path = tmp_path / "module.py"
    path.write_bytes(textwrap.dedent(before).replace("\n", newline).encode(encoding))
    settings = DocstringSettings(update=True, describe=False)
    report = document([path], settings, "write", model)
    assert not report.errors, report.errors
    after = path.read_bytes().decode(encoding)
    old, new = ast.parse(textwrap.dedent(before)), ast.parse(after.replace(newline, "\n"))
    # Nothing but docstrings changed.
    for tree in (old, new):
        for node in ast.walk(tree):
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and ast.get_docstring(node) is not None:
                node.body = node.body[1:]
    assert ast.dump(old) == ast.dump(new)
    return after


def check(tmp_path, before: str, after: str) -> None:
    assert updated(tmp_path, before) == textwrap.dedent(after)


def test_google_parameters_added_removed_reordered_and_retyped(tmp_path):
    check(
        tmp_path,
        '''
        def join(base: str, name: str, sep="/"):
            """Join two parts.

            Free text that stays.

            Args:
                sep: The separator,
                    on two lines.
                base (int): The first part.
                gone (float): Removed.
                name (str): The second part.
            """
            print(base + sep + name)
        ''',
        '''
        def join(base: str, name: str, sep="/"):
            """Join two parts.

            Free text that stays.

            Args:
                base (str): The first part.
                name (str): The second part.
                sep: The separator,
                    on two lines.
            """
            print(base + sep + name)
        ''',
    )


def test_a_rename_carries_the_description(tmp_path):
    check(
        tmp_path,
        '''
        def f(path, mode):
            """Open.

            Args:
                filename: The file to open.
                mode: How.
            """
            print(path, mode)
        ''',
        '''
        def f(path, mode):
            """Open.

            Args:
                path: The file to open.
                mode: How.
            """
            print(path, mode)
        ''',
    )


def test_google_returns_yields_and_raises(tmp_path):
    check(
        tmp_path,
        '''
        def count(items) -> int:
            """Count.

            Args:
                items: The items.

            Yields:
                Nothing, it returns.
            """
            if items is None:
                raise ValueError("none")
            return len(items)
        ''',
        '''
        def count(items) -> int:
            """Count.

            Args:
                items: The items.

            Returns:
                int

            Raises:
                ValueError:
            """
            if items is None:
                raise ValueError("none")
            return len(items)
        ''',
    )


def test_numpy_kwargs_methods_and_classmethods(tmp_path):
    check(
        tmp_path,
        '''
        class Box:
            def put(self, item, *args, **kwargs):
                """Put.

                Parameters
                ----------
                self : Box
                    Not a parameter to document.
                item : object
                    The item.

                Returns
                -------
                bool
                    Never returned.
                """
                print(item, args, kwargs)

            @classmethod
            def make(cls, size: int):
                """Make.

                Parameters
                ----------
                size : str
                    How big.
                """
                return cls()
        ''',
        '''
        class Box:
            def put(self, item, *args, **kwargs):
                """Put.

                Parameters
                ----------
                item : object
                    The item.
                *args
                **kwargs
                """
                print(item, args, kwargs)

            @classmethod
            def make(cls, size: int):
                """Make.

                Parameters
                ----------
                size : int
                    How big.
                """
                return cls()
        ''',
    )


def test_rest_fields_nested_and_async_functions(tmp_path):
    check(
        tmp_path,
        '''
        def outer(a):
            """Outer.

            :param a: A.
            """

            async def inner(new_name: str, b):
                """Inner.

                :param old_name: The name.
                :type old_name: int
                :param b: B.
                :returns: something
                """
                print(new_name, b)

            return inner
        ''',
        '''
        def outer(a):
            """Outer.

            :param a: A.
            """

            async def inner(new_name: str, b):
                """Inner.

                :param new_name: The name.
                :type new_name: str
                :param b: B.
                """
                print(new_name, b)

            return inner
        ''',
    )


def test_a_docstring_in_step_and_a_summary_are_left_alone(tmp_path):
    before = '''
    def f(a, b):
        """Add.

        Args:
            a: A.
            b: B.

        Returns:
            The sum.
        """
        return a + b


    def g(a):
        """Only a summary: it lists nothing, so nothing is stale."""
        return a
    '''
    assert updated(tmp_path, before) == textwrap.dedent(before)


def test_stubs_keep_their_returns(tmp_path):
    before = '''
    class Base:
        def area(self):
            """The area.

            Returns:
                float: The area.
            """
            raise NotImplementedError
    '''
    assert updated(tmp_path, before) == textwrap.dedent(before)


def test_descriptions_from_the_model_fill_new_entries():
    source = '''def f(a, b):
    """Do.

    Args:
        a: A.
    """
    return a
'''
    from codemt.write.templates import facts_of
    from codemt.write.upkeep import update

    node = ast.parse(source).body[0]
    literal = ast.get_source_segment(source, node.body[0].value)
    doc = read_docstring(literal)
    found = Descriptions(parameters={"b": "The second one."}, returns="The first.")
    lines = update(doc, facts_of(node, is_method=False), node, found)
    assert render(doc, lines) == (
        '"""Do.\n\n    Args:\n        a: A.\n        b: The second one.\n\n'
        '    Returns:\n        The first.\n    """'
    )


@pytest.mark.parametrize(
    "literal, reason",
    [
        ('"""Do.\n\n\tArgs:\n        a: A.\n    """', "tab"),
        ('"""Do.\n\n    Args:\n        just words here\n    """', "no parameters entry"),
        ('"""Do.\n\n    Args:\n            a: deeper\n        b: B.\n    """', "indented more"),
    ],
)
def test_unreadable_sections_raise(literal, reason):
    with pytest.raises(Unreadable, match=reason):
        read_docstring(literal, "google")


def test_unreadable_docstrings_are_reported_and_left_untouched(tmp_path):
    path = tmp_path / "module.py"
    text = 'def f(a, b):\n    """Do.\n\n    Args:\n        this is prose, not an entry\n    """\n'
    path.write_text(text)
    report = document([path], DocstringSettings(update=True), "write", no_model)
    assert path.read_text() == text
    assert [e.line for e in report.unreadable] == [1]
    assert "DS900" in str(report.unreadable[0])


ODD = {
    "raw string": (
        '''
        def f(a, pattern):
            r"""Match \\d.

            Args:
                a: A \\w.
            """
            return a
        ''',
        '''
        def f(a, pattern):
            r"""Match \\d.

            Args:
                a: A \\w.
                pattern:
            """
            return a
        ''',
    ),
    "escaped quotes and single quotes": (
        """
        def f(a, b):
            '''Say \\'hi\\' and \"\"\"

            Args:
                a: A "quoted" one.
            '''
            print(a, b)
        """,
        """
        def f(a, b):
            '''Say \\'hi\\' and \"\"\"

            Args:
                a: A "quoted" one.
                b:
            '''
            print(a, b)
        """,
    ),
    "one-line docstring": (
        '''
        def f(a, b):
            """Only a summary."""
            print(a, b)
        ''',
        None,
    ),
    "not the first statement": (
        '''
        def f(a, b):
            print(a, b)
            """Args:
                c: Not a docstring.
            """
        ''',
        None,
    ),
    "f-string": (
        '''
        def f(a, b):
            f"""Do {a}.

            Args:
                c: Not a docstring either.
            """
            print(a, b)
        ''',
        None,
    ),
    "bytes": (
        '''
        def f(a, b):
            b"""Do.

            Args:
                c: Bytes are no docstring.
            """
            print(a, b)
        ''',
        None,
    ),
}


@pytest.mark.parametrize("case", ODD)
def test_odd_literals_are_updated_correctly_or_left_alone(tmp_path, case):
    """A literal that is no docstring stays as it was (the function gains a docstring,
    as every function without one does)."""
    before, after = ODD[case]
    if after is not None:
        assert updated(tmp_path, before) == textwrap.dedent(after)
        return
    result = updated(tmp_path, before, model=Summaries)
    kept = textwrap.dedent(before).split("\n", 2)[2]  # after the def line
    if '"""Only a summary."""' in before:
        assert result == textwrap.dedent(before)
    else:
        assert '    """Written."""\n' in result and result.endswith(kept)


def test_crlf_and_latin1_files_keep_their_bytes_apart_from_the_change(tmp_path):
    before = '''\
    # -*- coding: latin-1 -*-
    def f(a, b):
        """Café.

        Args:
            b: The second, déjà.
            a: The first.
        """
        print(a, b)
    '''
    after = updated(tmp_path, before, encoding="latin-1", newline="\r\n")
    assert after == textwrap.dedent(before).replace(
        "        b: The second, déjà.\n        a: The first.\n",
        "        a: The first.\n        b: The second, déjà.\n",
    ).replace("\n", "\r\n")


def test_a_file_changed_after_it_was_read_is_not_written(tmp_path):
    from codemt.write.apply import literal_edit, read_source
    from codemt.write.docstring import apply_docstrings
    from codemt.write.upkeep import find_stale

    path = tmp_path / "module.py"
    path.write_text(
        'def f(a, b):\n    """Do.\n\n    Args:\n        b: B.\n        a: A.\n    """\n'
    )
    source = read_source(path)
    [stale], _ = find_stale([source], lambda f: True)
    edit = literal_edit('"""another docstring"""', '"""Do."""', "\n")
    from codemt.write.apply import SourceError

    with pytest.raises(SourceError, match="not the one read"):
        apply_docstrings(source, {}, DocstringSettings(), {stale.function.index: edit})


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-c", "import sys; from codemt.cli import main; sys.exit(main())"]
        + ["docstring", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


STALE = '''\
def f(a, b) -> int:
    """Do.

    Args:
        a: A.
        c: C.
    """
    return a


def g():
    return 1
'''


def test_lint_reports_codes_and_select_and_ignore_filter_them(tmp_path):
    (tmp_path / "m.py").write_text(STALE)
    result = run_cli("m.py", "--lint", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "m.py:1: DS101 parameter b is not documented",
        "m.py:1: DS102 c is documented but is no parameter",
        "m.py:1: DS201 function returns a value but the docstring has no Returns",
        "m.py:11: DS001 g has no docstring",
    ]
    only = run_cli("m.py", "--lint", "--select", "DS1", "--ignore", "DS102", cwd=tmp_path)
    assert only.stdout.splitlines() == ["m.py:1: DS101 parameter b is not documented"]
    clean = run_cli("m.py", "--lint", "--select", "DS3", cwd=tmp_path)
    assert clean.returncode == 0 and clean.stdout == ""
    bad = run_cli("m.py", "--lint", "--select", "XX9", cwd=tmp_path)
    assert bad.returncode == 2 and "no finding has the code 'XX9'" in bad.stderr


def test_update_check_exits_1_on_stale_docstrings_without_a_model(tmp_path):
    (tmp_path / "m.py").write_text(STALE.replace("def g():\n    return 1\n", ""))
    result = run_cli("m.py", "--update", "--check", cwd=tmp_path)
    assert result.returncode == 1
    assert "m.py:1: f's docstring is out of date (DS101, DS102, DS201)" in result.stdout
    assert (tmp_path / "m.py").read_text().startswith("def f(a, b) -> int:")


def test_keywords_passed_on_through_kwargs_are_kept_and_never_renamed(tmp_path):
    check(
        tmp_path,
        '''
        class Schema:
            def handle_error(self, error, data, *, many, **kwargs):
                """Handle an error.

                :param error: The error.
                :param many: Value of ``many``.
                :param partial: Value of ``partial`` on load.
                """
                pass
        ''',
        '''
        class Schema:
            def handle_error(self, error, data, *, many, **kwargs):
                """Handle an error.

                :param error: The error.
                :param data:
                :param many: Value of ``many``.
                :param kwargs:
                :param partial: Value of ``partial`` on load.
                """
                pass
        ''',
    )


# ------------------------------------------------------------------ converting styles

GOOGLE_DOC = '''def join(base: str, name: str, *parts, **options) -> str:
    """Join two parts of a path.

    The parts are joined with the separator,
    which may be long.

    Args:
        base (str): The first part,
            on two lines.
        name: The second part.
        *parts: More parts.
        **options: Settings.

    Returns:
        str: The joined path.

    Raises:
        ValueError: If base is empty.

    Examples:
        >>> join("a", "b")
        'a/b'
    """
    return base
'''


def converted(text: str, style: str) -> str:
    from codemt.write.convert import convert
    from codemt.write.templates import facts_of

    node = ast.parse(text).body[0]
    literal = ast.get_source_segment(text, node.body[0].value)
    doc = read_docstring(literal)
    lines = convert(doc, style, facts_of(node, is_method=False))
    return text if lines is None else text.replace(literal, render(doc, lines))


def words(text: str) -> list[str]:
    """The words a person wrote (sorted: rest puts a type after its description),
    without the section syntax of any style."""
    doc = ast.get_docstring(ast.parse(text).body[0])
    doc = re.sub(r":type \w+:", ":type:", doc)  # rest names a typed parameter twice
    syntax = {"Args", "Parameters", "Returns", "Raises", "param", "type", "returns", "rtype"}
    syntax |= {"raises", "Examples"}
    return sorted(w for w in re.findall(r"[A-Za-z]+", doc) if w not in syntax)


@pytest.mark.parametrize("via", ["numpy", "rest"])
def test_google_converts_and_comes_back_unchanged(via):
    there = converted(GOOGLE_DOC, via)
    assert there != GOOGLE_DOC and ast.parse(there)
    assert words(there) == words(GOOGLE_DOC)
    assert converted(there, "google") == GOOGLE_DOC


def test_numpy_to_rest_and_google_keep_every_word():
    numpy_doc = converted(GOOGLE_DOC, "numpy")
    assert "    Parameters\n    ----------\n    base : str\n        The first part,\n" in numpy_doc
    for style in ("rest", "google"):
        assert words(converted(numpy_doc, style)) == words(numpy_doc)
    rest_doc = converted(numpy_doc, "rest")
    assert ":param options: Settings.\n" in rest_doc and ":rtype: str\n" in rest_doc
    assert converted(rest_doc, "numpy") == numpy_doc


def test_convert_style_on_the_command_line(tmp_path):
    (tmp_path / "m.py").write_text(GOOGLE_DOC)
    check = run_cli("m.py", "--convert-style", "numpy", "--check", cwd=tmp_path)
    assert (
        check.returncode == 1 and "m.py:1: join's docstring is not in numpy style" in check.stdout
    )
    written = run_cli("m.py", "--convert-style", "numpy", "--write", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "1 docstring converted" in written.stderr
    assert (tmp_path / "m.py").read_text() == converted(GOOGLE_DOC, "numpy")
    again = run_cli("m.py", "--convert-style", "numpy", "--check", cwd=tmp_path)
    assert again.returncode == 0
