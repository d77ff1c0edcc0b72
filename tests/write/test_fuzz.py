"""Property-based fuzzing (Hypothesis) of the parts that take input from outside: the HTTP
API's request bodies, `codemt docstring --write` on generated Python files, and `codemt mine`
on generated trees and archives. Each run draws new cases of the kinds listed in
docs/reliability.md; what an earlier run found is kept below as an `@example`."""

import ast
import codecs
import io
import json
import math
import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from codemt.corpus import iter_records
from codemt.generation import Translation
from codemt.mine.pipeline import mine
from codemt.mine.resolved import Repository
from codemt.mine.settings import MineSettings
from codemt.mine.sources import resolve
from codemt.source.docstrings import summary_of
from codemt.source.extract import docstring_node
from codemt.source.reading import printable
from codemt.translate import Translator
from codemt.write.docstring import DocstringSettings, document
from tests.conftest import without_docstrings
from tests.write.test_docstring import comments

# ------------------------------------------------------------------ the HTTP API

FUNCTION = "def add(a, b):\n    total = a + b\n    return total\n"
FILE = '''import math


class Circle:
    """A circle."""

    def __init__(self, radius):
        self.radius = radius

    def area(self):  # comment stays
        return math.pi * self.radius ** 2
'''
TRANSLATE = {"source": FUNCTION, "target": "docstring", "num_beams": 1, "max_new_tokens": 8}
DOCSTRING = {"text": FILE, "function": "Circle.area", "num_beams": 1, "max_new_tokens": 8}
ENDPOINTS = {"/v1/translate": TRANSLATE, "/v1/docstring": DOCSTRING}

# Characters that break naive text handling: lone surrogates (JSON may escape them, no
# encoder writes them), NUL, a BOM, line and paragraph separators, quotes and escapes.
ODD_CHARACTERS = ["\ud800", "\udfff", "\x00", "\ufeff", "\u2028", "\\", '"', "\r", "\t", "é"]
odd_text = st.text(st.one_of(st.characters(), st.sampled_from(ODD_CHARACTERS)), max_size=30)
long_text = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["x", "def f(): pass\n", "é", "\ud800", "[", '"""']),
    st.integers(1, 70_000),
)
odd_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-300, 10**400, -(10**30)]),
    st.sampled_from([2**63, 2**31, 0, -1, 0.5, True, False]),
    st.integers(),
    st.floats(),
)
scalars = st.one_of(st.none(), st.booleans(), odd_numbers, odd_text)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)

SOURCES = [
    FUNCTION,
    "def f(a, b):",  # a signature alone
    "async def g(*args, key: int = 1, **kw) -> 'str':\n    return str(key)\n",
    "    def method(self):\n        return self\n",  # indented, copied out of a class
    "def h():\n    '''Doc.'''\n",
    "@decorator\ndef d(x): return x\n",
    "def f(:\n",
    "x = 1\n",
    "",
    "def é(ü=1):\n    return 'ü'\r\n",
]
FILES = [
    FILE.replace("\n", "\r\n"),
    FILE.replace("\n", "\r"),  # lone "\r" ends lines too
    "class A:\n\tdef m(self): return 1  # a one-liner, tab-indented\n",
    "def f(x):\n    # a comment first\n    return x\n\n\ndef add(a, b): ...\n",
    "async def f(*, key='数据'):\n    'Has one.'\n\n\nclass A:\n    def m(self):\n        pass\n",
]
context_item = st.fixed_dictionaries(
    {"signature": odd_text | st.sampled_from(SOURCES), "docstring": odd_text},
    optional={"body": odd_text | st.sampled_from(SOURCES)},
)
GENERATION = {
    "num_beams": st.integers(1, 8),
    "num_samples": st.integers(1, 8),
    "temperature": st.floats(0.01, 100),
    "top_p": st.floats(0.001, 1),
    "max_new_tokens": st.integers(1, 300),
    "no_repeat_ngram_size": st.none() | st.integers(0, 5),
    "length_penalty": st.floats(-10, 10),
    "real_words": st.booleans(),
    "name_weight": st.floats(0, 10),
    "seed": st.none() | st.integers(0, 2**32 - 1) | st.integers(),
    "context": st.none() | st.lists(context_item, max_size=16),
}
# Per endpoint, its own fields (the first two required by these tests) and their valid values.
FIELDS = {
    "/v1/translate": {
        "source": st.sampled_from(SOURCES) | odd_text | long_text,
        "target": st.sampled_from(["docstring", "body", "signature"]),
        "style": st.sampled_from([None, "summary", "google", "numpy", "rest"]),
    },
    "/v1/docstring": {
        "text": st.sampled_from([FILE] * 6 + FILES + SOURCES) | odd_text,
        "function": st.sampled_from(["Circle.area", "Circle.__init__", "add", "A.m", "f", None]),
        "line": st.none() | st.integers(1, 12),
        "style": st.sampled_from([None, "summary", "google", "numpy", "rest"]),
    },
}


def rarely(draw) -> bool:
    """True one time in five."""
    return draw(st.sampled_from([False, False, False, False, True]))


@st.composite
def request_bodies(draw, path: str) -> dict:
    """A JSON object for an endpoint: valid fields (the required ones, some of the others,
    settings that fit together), then mostly one of them made junk or left out, and
    sometimes fields it does not know; so that many bodies get past validation."""
    fields = {**FIELDS[path], **GENERATION}
    required = list(fields)[:2]
    names = required + draw(st.lists(st.sampled_from(list(fields)[2:]), unique=True))
    body = {name: draw(fields[name]) for name in names}
    if draw(st.booleans()):  # sampling takes one beam; several samples need sampling
        body |= {"sample": True, "num_beams": 1}
    else:
        body.pop("num_samples", None)
    broken = draw(st.sampled_from([0, 0, 0, 1, 1, 2]))
    for name in draw(st.lists(st.sampled_from(list(fields)), unique=True, max_size=broken)):
        body[name] = draw(junk)
    if rarely(draw):
        body.pop(draw(st.sampled_from(required)))
    if rarely(draw):
        body.update(draw(st.dictionaries(odd_text, junk, min_size=1, max_size=2)))
    return body


def _to_json(value: object, ascii_only: bool) -> bytes:
    # Python's json writes NaN, Infinity and integers of any size, as a careless client may;
    # written as UTF-8 a lone surrogate gives bytes that are not UTF-8.
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def raw_bodies(draw, path: str) -> tuple[bytes, dict | None]:
    """Bytes to POST, and the object they encode if they are a whole JSON object: an object,
    whole or cut short, other JSON, or bytes that are not JSON."""
    kind = draw(st.sampled_from(["object"] * 6 + ["cut", "other", "nested", "bytes"]))
    if kind in ("object", "cut"):
        body = draw(request_bodies(path))
        data = _to_json(body, draw(st.booleans()))
        if kind == "cut":
            return data[: draw(st.integers(0, len(data) - 1))], None
        return data, body
    if kind == "other":
        return _to_json(draw(junk), draw(st.booleans())), None
    if kind == "nested":  # past the JSON parser's depth, alone or as a field
        depth = draw(st.integers(1, 60_000))
        nested = b"[" * depth + b"]" * depth
        return draw(st.sampled_from([nested, b'{"source": "x", "context": ' + nested + b"}"])), None
    return draw(st.binary(max_size=200)), None


CONTENT_TYPES = st.sampled_from(
    [
        *["application/json"] * 16,
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        None,
    ]
)


# What the stand-in model writes: prose, code, and text that is hard to put in a literal.
OUTPUTS = [
    "Return the total of a and b.",
    "    return a + b",
    '"""Quoted.""" and \\',
    "ends with a backslash \\",
    "é\u2028line\tand a NUL \x00",
    "",
    "def",
]


class EchoBackend:
    """A stand-in model behind the real Translator, so that requests run the whole path
    (encoding, neighbours, candidates, scores) in microseconds: its hypotheses are texts of
    OUTPUTS chosen by the input's length, and the last of them scores -inf, as a beam may."""

    name = "torch"
    device = "cpu"
    model = None
    parameters = 1000

    def __init__(self, tokenizer) -> None:
        self.outputs = [e.ids for e in tokenizer.encode_batch(OUTPUTS, add_special_tokens=False)]

    def generate(self, sources, n_return, settings, *, words=False):
        import torch

        from codemt.backends import Hypothesis

        if settings.sample and settings.seed is not None:  # seeded as both real backends seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(settings.seed)
            try:
                import ctranslate2
            except ImportError:
                pass
            else:
                ctranslate2.set_random_seed(settings.seed)
        scores = [-1.0 - i for i in range(n_return - 1)] + [-math.inf]
        return [
            [Hypothesis(self.outputs[(len(s) + i) % len(OUTPUTS)], v) for i, v in enumerate(scores)]
            for s in sources
        ]

    def score(self, pairs):
        """Neighbour summaries offered as candidates are scored too."""
        return [-0.5 for _ in pairs]


@pytest.fixture(scope="module")
def echo_translator(tmp_path_factory) -> Translator:
    """A real Translator (tokenizer, encoding, neighbours) over the echoing stand-in model,
    reading project memory (context items) as a model trained with it does."""
    from codemt.examples import Vocabulary
    from codemt.tokenizer import TokenizerSettings, train_tokenizer

    tokenizer = train_tokenizer([FUNCTION, FILE, *SOURCES] * 4, TokenizerSettings(vocab_size=800))
    meta = {
        "preset": "tiny",
        "stage": "multimode",
        "examples": {"max_source_tokens": 128, "max_target_tokens": 32, "neighbors": 2},
    }
    folder = tmp_path_factory.mktemp("echo") / "echo-model"
    return Translator(
        EchoBackend(tokenizer), folder, meta, tokenizer, Vocabulary.from_tokenizer(tokenizer)
    )


@pytest.fixture(scope="module")
def api(echo_translator):
    """A client of the app; a fault of the server comes back as a 500, not as an exception,
    so that the property sees what a client would."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("jsonschema")
    from fastapi.testclient import TestClient

    from codemt.serve.app import ServeSettings, create_app

    app = create_app(echo_translator, ServeSettings(batch_wait_ms=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        baseline = {path: client.post(path, json=body) for path, body in ENDPOINTS.items()}
        assert all(r.status_code == 200 for r in baseline.values()), baseline
        client.baseline = {path: _without_timing(r.json()) for path, r in baseline.items()}
        yield client


def _without_timing(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "timing"}


def _check_answer(client, path: str, response, sent: dict | None) -> None:
    """2xx or 4xx, JSON; a 2xx body as the app's OpenAPI schema declares it, and a file
    edited by /v1/docstring changed in nothing but the docstring."""
    from jsonschema import Draft202012Validator

    status = response.status_code
    event(f"{path} {status}")
    assert 200 <= status < 300 or 400 <= status < 500, (status, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    if status >= 400:
        assert isinstance(body, dict) and body.get("detail"), body
        return
    schema = client.app.openapi()
    declared = schema["paths"][path]["post"]["responses"][str(status)]
    body_schema = declared["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**body_schema, "components": schema["components"]})
    validator.validate(body)
    if path == "/v1/docstring":
        old = ast.parse(sent["text"])
        assert without_docstrings(ast.parse(body["text"]), old) == ast.dump(old)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None)
@given(
    request=st.sampled_from(sorted(ENDPOINTS)).flatmap(
        lambda path: st.tuples(st.just(path), raw_bodies(path))
    ),
    content_type=CONTENT_TYPES,
)
@example(
    request=(
        "/v1/translate",
        (b'{"source": "def f(): pass", "target": "body", "top_p": NaN}', None),
    ),
    content_type="application/json",
)
@example(  # a seed CTranslate2 cannot take was a 500 (TypeError); now 422, as any out of range
    request=(
        "/v1/translate",
        (
            b'{"source": "def f(): pass", "target": "body", "sample": true, "num_beams": 1, '
            b'"seed": -1}',
            None,
        ),
    ),
    content_type="application/json",
)
@example(  # the Python 2 conversion of a source it cannot tokenize was a 500 (KeyError)
    request=("/v1/translate", ('{"source": "¼", "target": "docstring"}'.encode(), None)),
    content_type="application/json",
)
def test_any_request_body_gets_a_json_answer_below_500(api, request, content_type):
    path, (content, sent) = request
    headers = {} if content_type is None else {"Content-Type": content_type}
    _check_answer(api, path, api.post(path, content=content, headers=headers), sent)
    # The server still answers a valid request as it did before.
    for valid_path, body in ENDPOINTS.items():
        response = api.post(valid_path, json=body)
        assert response.status_code == 200, response.text
        assert _without_timing(response.json()) == api.baseline[valid_path]


# ------------------------------------------------------------------ Python files from a grammar

# Identifiers Python keeps as written (NFKC-stable), so that they can be found in the bytes.
NAMES = ["f", "add", "_private", "café", "数据", "π_value", "Ωmega", "get_x", "__init__"]
PARAMETERS = [
    "",
    "a, b",
    "self",
    "a, b=1, *args, key='é', **kw",
    "x: int = 0, /, y='数'",
    "*, only",
    "\n    a,  # a comment in the signature\n    b=(1,\n 2),\n",  # across lines
    "a, \\\n b",  # a line continuation in the signature
]
RETURNS = ["", " -> int", " -> 'str'", " -> list[int]"]
DECORATORS = [
    "@staticmethod",
    "@property",
    "@functools.lru_cache(maxsize=None)",
    "@decorator  # why",
    "@(lambda f: f)",
]
# (first line, more lines): a docstring, or a string that is not one, as the body's first line.
DOCSTRINGS = [
    ('"""Doc."""', []),
    ("'Single quoted.'", []),
    ('r"""Raw \\d."""', []),
    ('"""Doc."""  # a comment after it', []),
    ('u"Old style."', []),
    ('"""   """', []),
    ('"""Summary.', ["", "More about it.", '"""']),
    ('f"not {1} a docstring"', []),
    ("b'bytes are no docstring'", []),
]
STATEMENTS = [
    "return 1",
    "pass",
    "...",
    "x = 'é'  # a comment",
    "return a + b if a else '数据'",
    "yield x",
    "raise ValueError('bad')",
    "global g",
    "print('tab\\there', end='')",
    "x = 1 + \\\n2",  # a line continuation
    "value = {'k': [1, 2,\n    3]}",  # brackets across lines
    "text = '''multi\nline'''",  # a string across lines
    "lambda: 0",
    "# a comment line",
    "x = 1; y = 2  # two statements",
    "if x: return 1",
    "pass  # type: ignore",
    "\x0cx = 1",  # a form feed before a statement
]
ONE_LINERS = ["return 1", "x = 1; return x", "...  # stub", "pass", "'''Doc.'''", "return 'é';"]


def functions(bodies: st.SearchStrategy[list]) -> st.SearchStrategy[tuple]:
    """A function: decorators, async or not, a docstring or none, a body or a one-liner."""
    return st.builds(
        lambda decorators, is_async, name, params, returns, comment, docstring, body, oneliner: (
            "def",
            decorators,
            f"{'async ' if is_async else ''}def {name}({params}){returns}:",
            comment,
            docstring,
            body,
            oneliner,
        ),
        st.lists(st.sampled_from(DECORATORS), max_size=2),
        st.booleans(),
        st.sampled_from(NAMES),
        st.sampled_from(PARAMETERS),
        st.sampled_from(RETURNS),
        st.sampled_from(["", "  # a comment on the def line"]),
        st.none() | st.sampled_from(DOCSTRINGS),
        bodies,
        st.sampled_from([None, None, None, *ONE_LINERS]),
    )


def classes(bodies: st.SearchStrategy[list]) -> st.SearchStrategy[tuple]:
    """A class with a docstring or none, holding statements and methods."""
    return st.builds(
        lambda decorators, name, bases, docstring, body: (
            "class",
            decorators,
            f"class {name}{bases}:",
            docstring,
            body,
        ),
        st.lists(st.sampled_from(["@dataclass", "@decorator  # why"]), max_size=1),
        st.sampled_from(NAMES),
        st.sampled_from(["", "(Base)", "(Exception, metaclass=Meta)"]),
        st.none() | st.sampled_from(DOCSTRINGS),
        bodies,
    )


def _blocks(inner: st.SearchStrategy[tuple]) -> st.SearchStrategy[tuple]:
    body = st.lists(inner, min_size=1, max_size=3)
    return st.one_of(
        functions(body),
        classes(body),
        st.builds(lambda body: ("block", "if x:", body), body),
    )


SIMPLE_STATEMENT = st.builds(lambda text: ("line", text), st.sampled_from(STATEMENTS))
# A statement of a body: simple, a comment, or a function, class or block holding others.
STATEMENT = st.recursive(SIMPLE_STATEMENT, _blocks, max_leaves=8)
# Top-level statements are mostly functions and classes.
TOP_LEVEL = st.one_of(
    functions(st.lists(STATEMENT, min_size=1, max_size=3)),
    classes(st.lists(STATEMENT, min_size=1, max_size=3)),
    STATEMENT,
)


def render(node: tuple, depth: int, unit: str) -> list[str]:
    """The source lines of a statement at `depth` levels of `unit` indentation. Lines after
    the first of a multi-line statement are written as they are (a string's, a bracket's)."""
    indent = unit * depth
    kind = node[0]
    if kind == "line":
        first, *rest = node[1].split("\n")
        return [indent + first, *rest]
    if kind == "block":
        return [indent + node[1], *(line for s in node[2] for line in render(s, depth + 1, unit))]
    if kind == "def":
        _, decorators, header, comment, docstring, body, oneliner = node
        lines = [indent + d for d in decorators]
        if oneliner is not None:
            return [*lines, f"{indent}{header} {oneliner}"]
        lines.append(f"{indent}{header}{comment}")
    else:
        _, decorators, header, docstring, body = node
        lines = [indent + d for d in decorators] + [indent + header]
    inner = indent + unit
    if docstring is not None:
        first, more = docstring
        lines += [inner + first, *(inner + line if line else "" for line in more)]
    return lines + [line for statement in body for line in render(statement, depth + 1, unit)]


@st.composite
def python_files(draw) -> bytes:
    """The bytes of a Python file: statements from the grammar above, laid out with one of
    several indentations, line endings and encodings (a BOM, a coding cookie), sometimes
    damaged so that it no longer parses (or does, still)."""
    unit = draw(st.sampled_from(["    ", "  ", "\t", "        "]))
    body = draw(st.lists(TOP_LEVEL, min_size=1, max_size=4))
    lines = [line for node in body for line in render(node, 0, unit)]
    head = draw(
        st.lists(
            st.sampled_from(
                ["#!/usr/bin/env python", '"""A module."""', "import os  # why", "", "# a comment"]
            ),
            max_size=3,
        )
    )
    lines = head + lines
    if draw(st.booleans()):  # blank lines between statements
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, "")
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, newline, ""]))
    encoding = draw(
        st.sampled_from(["utf-8"] * 5 + ["utf-8-sig"] * 2 + ["latin-1"] * 2 + ["lying ascii"])
    )
    if encoding == "latin-1" and max(map(ord, text), default=0) < 256:
        data = f"# -*- coding: latin-1 -*-{newline}{text}".encode("latin-1")
    elif encoding == "lying ascii":  # a cookie the bytes do not keep to, where not ASCII
        data = f"# coding: ascii{newline}{text}".encode()
    else:
        data = text.encode("utf-8" if encoding == "latin-1" else encoding)
    damage = draw(st.sampled_from([None] * 6 + ["cut", "colon", "indent", "nul", "bad def"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "colon" and b":" in data:
        at = draw(st.sampled_from([i for i, c in enumerate(data) if c == ord(":")]))
        data = data[:at] + data[at + 1 :]
    elif damage == "indent":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\n " + data[at:]
    elif damage == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif damage == "bad def":
        data += b"\ndef broken(:\n"
    return data


def parses(data: bytes) -> ast.Module | None:
    """The tree Python makes of a file's bytes, or None when it does not parse."""
    try:
        return ast.parse(data)
    except (SyntaxError, ValueError, RecursionError):
        return None


# ------------------------------------------------------------------ codemt docstring --write

SUMMARIES = [
    "Summary of NAME.",
    'Say "hi" to NAME',
    "Ends with a backslash \\",
    'Has """ inside and \\n',
    "Tab\there\x01 and a NUL \x00",
    "é数据 in other scripts",
    "Line one.\n\nMore text after a blank line.",
    "   ",
    "",
    "'''Quoted.'''",
]
STYLED = [
    "Do it.\n\nArgs:\n    a: The first.\n\nReturns:\n    The result.",
    "Do it.\n\nParameters\n----------\na : int\n    The first.",
    ":param a: The first.\n:returns: The result.",
    'Odd "quotes" and \\ backslashes:\n\nArgs:\n    x: """',
]
# Model output: no lone surrogates, which decoding tokens never gives.
MODEL_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


class Writer:
    """A stand-in model writing the same summary for every function (NAME: its name) and
    a styled docstring for the structured styles."""

    def __init__(self, summary: str, styled: str) -> None:
        self.summary = summary
        self.styled = styled

    def translate_batch(self, methods, target, style=None, **options):
        text = self.summary if style in (None, "summary") else self.styled
        return [Translation(text.replace("NAME", m["name"]), 0.0) for m in methods]


def _line_endings(data: bytes) -> set[bytes]:
    return set(re.findall(rb"\r\n|\r|\n", data))


def _comments(data: bytes) -> list[str]:
    # tokenize ends lines at "\n" only, where Python also ends them at a lone "\r"
    return comments(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))


def _without_blank_docstrings(tree: ast.Module) -> ast.Module:
    """The tree without its blank docstrings, which codemt writes over as over none."""
    for function in _functions(tree):
        docstring = docstring_node(function)
        if docstring is not None and not docstring.value.strip():
            function.body = function.body[1:]
    return tree


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None)
@given(
    files=st.lists(python_files(), min_size=1, max_size=3),
    summary=st.sampled_from(SUMMARIES) | MODEL_TEXT,
    styled=st.sampled_from(STYLED) | MODEL_TEXT,
    style=st.sampled_from(["summary", "summary", "google", "numpy", "rest", "auto"]),
    line_length=st.integers(20, 120),
    overwrite=st.booleans(),
)
@example(  # a coding cookie on a line ended by a lone "\r" went unseen: the file was refused
    files=[b"# -*- coding: latin-1 -*-\rdef f(a, key='\xe9'):\r    return 1\r"],
    summary="Summary of NAME.",
    styled=STYLED[0],
    style="summary",
    line_length=88,
    overwrite=False,
)
def test_docstring_write_keeps_every_file_parsing_and_changes_only_docstrings(
    tmp_path_factory, files, summary, styled, style, line_length, overwrite
):
    folder = tmp_path_factory.mktemp("docstring")
    paths = [folder / f"m{i}.py" for i in range(len(files))]
    for path, data in zip(paths, files, strict=True):
        path.write_bytes(data)
    chosen = DocstringSettings(style=style, line_length=line_length, overwrite=overwrite)

    report = document([str(folder)], chosen, "write", lambda: Writer(summary, styled))

    errors = {Path(e.path): e for e in report.errors}
    for path, old in zip(paths, files, strict=True):
        new = path.read_bytes()
        old_tree = parses(old)
        event("parses" if old_tree is not None else "does not parse")
        event("changed" if new != old else "unchanged")
        if old_tree is None:
            assert new == old, f"{path.name} did not parse and was changed"
            assert path in errors
            continue
        new_tree = parses(new)
        assert new_tree is not None, f"{path.name} no longer parses:\n{new!r}"
        # (without_docstrings takes the docstrings out of the tree it is given)
        if overwrite:  # every docstring may change
            assert without_docstrings(new_tree) == without_docstrings(parses(old))
        else:  # only functions without one (or with a blank one) get one
            old_tree = _without_blank_docstrings(old_tree)
            assert without_docstrings(new_tree, old_tree) == ast.dump(old_tree)
        assert _comments(new) == _comments(old)
        assert new.startswith(codecs.BOM_UTF8) == old.startswith(codecs.BOM_UTF8)
        if len(_line_endings(old)) == 1:
            assert _line_endings(new) <= _line_endings(old)
        # A file that parses is written, unless the new text has a character its encoding lacks.
        if path in errors:
            assert "lacks" in errors[path].message, errors[path]
        elif summary_of(summary):
            assert all(docstring_node(f) is not None for f in _functions(parses(new))), new
    shutil.rmtree(folder)  # a passing example's files (a failing one's stay to be read)


# ------------------------------------------------------------------ codemt mine

# Folders, and whether the miner searches them (hidden, build output, virtual environments
# are not: "venv" gets a pyvenv.cfg).
FOLDERS = {
    "pkg": True,
    "sub": True,
    "données": True,
    os.fsdecode(b"r\xe9p"): True,  # not UTF-8
    "folder.py": True,
    ".hidden": False,
    "build": False,
    "__pycache__": False,
    "x.egg-info": False,
    "venv": False,
}
FILE_NAMES = [
    "m.py",
    "a.py",
    "__init__.py",
    "données.py",
    "with space.py",
    "-dash.py",
    "new\nline.py",
    ".py",
    "x.pyw",
    "UPPER.PY",
    "notes.txt",
    "a\\b.py",
    os.fsdecode(b"caf\xe9.py"),  # not UTF-8
]
OTHER_CONTENTS = [
    b"",
    b"def legacy(x):\n    print 'value', x\n    return x\n",  # Python 2
    b"\x00\x01\x02 binary",
    b"x = '\xff'\n",  # not UTF-8, no cookie
    b'def lone():\n    """Half a pair: \\ud800."""\n    return 1\n',  # a lone surrogate
    b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n",  # nested too deep
    b"def f(x):\n    return x\xc2\xb2\n",  # a character that is no operator: x\u00b2
    b"# padding\n" * 400 + b"def padded(x):\n    return x\n",  # over a small size limit
]
# Link targets: another file of the tree, a file outside it, nothing, itself, a loop of two,
# or a folder (named like a Python file, or the tree's own parent).
LINKS = ["inside", "inside", "outside", "dangling", "self", "loop", "folder", "parent"]
SECRET = b"def outside_secret():\n    return 'never mined'\n"


@st.composite
def trees(draw) -> list[tuple[str, str, object]]:
    """A project tree: (path relative to its root, kind, content) for files, links and fifos."""
    entries: dict[str, tuple[str, object]] = {}
    contents = python_files() | st.sampled_from(OTHER_CONTENTS)
    for _ in range(draw(st.integers(1, 8))):
        folders = draw(st.lists(st.sampled_from(sorted(FOLDERS)), max_size=2))
        path = "/".join([*folders, draw(st.sampled_from(FILE_NAMES))])
        kind = draw(st.sampled_from(["file"] * 6 + ["link", "link", "fifo"]))
        if kind == "file":
            entries.setdefault(path, ("file", draw(contents)))
        elif kind == "link":
            entries.setdefault(path, ("link", draw(st.sampled_from(LINKS))))
        else:
            entries.setdefault(path, ("fifo", None))
    return [(path, kind, content) for path, (kind, content) in entries.items()]


def make_tree(root: Path, entries: list[tuple[str, str, object]], outside: Path) -> None:
    """Write a tree's files, then its links and fifos."""
    files = [root / path for path, kind, _ in entries if kind == "file"]
    for path, kind, content in entries:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        for folder in target.relative_to(root).parents:
            if folder.name == "venv":
                (root / folder / "pyvenv.cfg").write_text("home = /usr\n")
        if kind == "file":
            target.write_bytes(content)
    for path, kind, content in entries:
        target = root / path
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "link":
            pointed = {
                "inside": files[0] if files else root / "nothing.py",
                "outside": outside,
                "dangling": root / "nothing.py",
                "self": target,
                "loop": target.with_name(target.name + ".loop.py"),
                "folder": root / "pkg",
                "parent": root.parent,
            }[content]
            target.symlink_to(os.path.relpath(pointed, target.parent))
            if content == "loop":
                pointed.symlink_to(target.name)


def python_candidates(root: Path, searched_only: bool = True) -> dict[str, Path]:
    """The names a miner must consider: .py and .pyw entries that are not folders (links
    included), in the folders it searches (or in all); by printable path relative to the
    root."""
    found = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [s for s in subfolders if FOLDERS.get(s, True) or not searched_only]
        for name in names:
            if name.endswith((".py", ".pyw")):
                path = Path(folder) / name
                found[printable(path.relative_to(root).as_posix())] = path
    return found


def _read(path: Path) -> bytes | None:
    """A regular file's bytes, through links; None for anything else."""
    try:
        return (
            path.read_bytes() if path.is_file() and not stat.S_ISFIFO(path.stat().st_mode) else None
        )
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11
        return None


def _parsable_inside(path: Path, root: Path, max_bytes: int) -> bool:
    """Whether a file, through its links, is inside `root`, small enough, and Python."""
    data = _read(path)
    if data is None or len(data) > max_bytes or not path.resolve().is_relative_to(root):
        return False
    return parses(data) is not None


def _holds(data: bytes | None, name: str) -> bool:
    """Whether a file's bytes hold a name, in UTF-8 or (where it can) in Latin-1."""
    if data is None:
        return False
    latin = name.encode("latin-1") if max(map(ord, name)) < 256 else None
    return name.encode() in data or (latin is not None and latin in data)


def pack(root: Path, archive: Path, kind: str) -> dict[str, Path]:
    """The tree as an archive (as an sdist lays it out: one top folder), with members that
    try to land outside the extraction folder; returns where each Python member came from,
    by its path below the top folder as the miner prints it (a backslash separates folders
    in a member's name, as in zips made on Windows)."""
    hostile = {"../evil.py": SECRET, "/abs.py": SECRET, "proj-1.0/../../up.py": SECRET}
    if kind != "zip":
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as tar:
            tar.add(root, arcname="proj-1.0")  # links and fifos as they are
            for name, data in hostile.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return {
            printable(path.relative_to(root).as_posix().replace("\\", "/")): path
            for path in python_candidates(root, searched_only=False).values()
        }
    packed = {}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for path in sorted(root.rglob("*")):
            data = None if path.is_symlink() else _read(path)
            if data is not None:
                # zip names are UTF-8: a name that is not is written with replacements
                name = os.fsencode(path.relative_to(root)).decode("utf-8", "replace")
                zip_file.writestr(f"proj-1.0/{name}", data)
                packed[name.replace("\\", "/")] = path
        for name, data in hostile.items():
            zip_file.writestr(name, data)
    return packed


def _check_manifest(manifest: dict, source: str, cache: Path, max_file_bytes: int) -> None:
    """The counts add up: every file found is seen or skipped while finding, every file
    seen is parsed or skipped while reading, every method staged is de-duplicated."""
    counts = manifest["counts"]
    resolved = resolve(source, cache, max_file_bytes=max_file_bytes)
    repos = [unit for unit in resolved if isinstance(unit, Repository)]
    found_skipped = sum(n for repo in repos for _, n in repo.skipped)
    assert counts.get("files_seen", 0) == sum(len(repo.files) for repo in repos)
    all_skipped = sum(n for key, n in counts.items() if key.startswith("files_skipped:"))
    assert (
        counts.get("files_parsed", 0) + all_skipped == counts.get("files_seen", 0) + found_skipped
    )
    assert counts.get("methods", 0) == manifest["dedup"]["methods_before"]
    kept = manifest["dedup"]["methods_after"]
    assert kept == sum(split["methods"] for split in manifest["splits"].values())


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    database=None,
)
@given(
    entries=trees(),
    archive=st.sampled_from([None, None, "tar.gz", "tar", "zip"]),
    cut=st.none() | st.floats(0, 1) | st.floats(0.8, 1),
    max_file_bytes=st.sampled_from([3000, 1_000_000]),
)
@example(  # a character the Python 2 converter cannot tokenize stopped the run (KeyError)
    entries=[("m.py", "file", b"def f(x):\n    return x\xc2\xb2\n")],
    archive=None,
    cut=None,
    max_file_bytes=1_000_000,
)
@example(  # an archive whose top folder held no Python file was reported as unreadable
    entries=[("notes.txt", "file", b"no Python here\n")],
    archive="zip",
    cut=None,
    max_file_bytes=1_000_000,
)
@example(  # a coding cookie on a line ended by a lone "\r" went unseen: bad_encoding
    entries=[("m.py", "file", b"# -*- coding: latin-1 -*-\rdef caf\xe9():\r    return 1\r")],
    archive=None,
    cut=None,
    max_file_bytes=1_000_000,
)
def test_mining_any_tree_or_archive_finishes_and_accounts_for_every_file(
    tmp_path_factory, entries, archive, cut, max_file_bytes
):
    base = tmp_path_factory.mktemp("mine")
    root, outside = base / "proj", base / "outside" / "secret.py"
    outside.parent.mkdir()
    outside.write_bytes(SECRET)
    make_tree(root, entries, outside)
    candidates = python_candidates(root)
    source = str(root)
    if archive is not None:
        source = str(base / f"proj-1.0.{archive}")
        # Extracted, an archive's folders are searched by the same rules, but its
        # pyvenv.cfg and other files that are not Python are not extracted.
        candidates = pack(root, Path(source), archive)
        if cut is not None:
            data = Path(source).read_bytes()
            Path(source).write_bytes(data[: int(len(data) * cut)])
    cache = base / "cache"
    mining = MineSettings(workers=1, progress=False, cache_dir=cache, max_file_bytes=max_file_bytes)

    manifest = mine([source], base / "corpus", mining)

    records = list(iter_records(base / "corpus"))
    event(f"{archive} cut={archive is not None and cut is not None} methods={bool(records)}")
    for key in manifest["counts"]:
        event(key)
    assert len(records) == manifest["dedup"]["methods_after"]
    for record in records:
        # A method comes from a Python file of the tree, and that file holds its name.
        if archive is None:
            files = [candidates.get(record["path"])]
        else:  # its path is below the archive's top folder, if it has one
            files = [
                p for name, p in candidates.items() if f"/{name}".endswith(f"/{record['path']}")
            ]
        name = record["name"].rsplit(".", 1)[-1]
        assert any(_holds(_read(p), name) for p in files if p is not None), record
        assert record["name"] != "outside_secret"
    # Every folder can be listed; an archive is damaged only where it was cut.
    parts = {key for key in manifest["counts"] if key.startswith("parts_skipped:")}
    assert parts <= ({"parts_skipped:damaged_archive"} if archive and cut is not None else set())
    failures = [f["reason"] for s in manifest["sources"] for f in s["failures"]]
    assert failures == [] or (archive and cut is not None and failures == ["bad_archive"])
    if not failures:
        _check_manifest(manifest, source, cache, max_file_bytes)
    if archive is None:
        # Every candidate is seen or skipped while finding files, and every file in the tree
        # that Python parses, within the size limit, is parsed.
        repo = next(resolve(source, cache, max_file_bytes=max_file_bytes))
        assert len(repo.files) + sum(n for _, n in repo.skipped) == len(candidates)
        python = [p for p in candidates.values() if _parsable_inside(p, root, max_file_bytes)]
        assert manifest["counts"].get("files_parsed", 0) >= len(python)
    # Nothing was written outside the corpus and the cache.
    assert not [p for p in base.rglob("*.py") if p.name in ("evil.py", "abs.py", "up.py")]
    shutil.rmtree(base)  # a passing example's files (a failing one's stay to be read)


# ------------------------------------------------------------------ docstring upkeep

_SECTION_LINES = [
    "Args:",
    "Arguments:",
    "Returns:",
    "Yields:",
    "Raises:",
    "Examples:",
    "Parameters",
    "Returns",
    "----------",
    "-------",
    "a (int): The a.",
    "b: The b.",
    "*args: More.",
    "**kwargs: Options.",
    "x, y : int",
    ":param a: The a.",
    ":param int b: The b.",
    ":type a: str",
    ":returns: A value.",
    ":rtype: int",
    ":raises ValueError: When.",
    "ValueError: If bad.",
    "just words",
    ">>> f(1)",
    "",
    '"quoted"',
    "back\\\\slash",
    "\t",
    "déjà vu",
]


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(_SECTION_LINES)), min_size=1, max_size=14
    ),
    signature=st.sampled_from(
        ["a, b", "a: int, *args, **kwargs", "self, b=1", "x", "", "a, *, b: str = 'z'"]
    ),
    body=st.sampled_from(
        ["return a", "yield 1", "raise ValueError('x')", "pass", "return", "print(1)"]
    ),
)
def test_updating_any_docstring_gives_a_parsing_file_or_leaves_it_alone(lines, signature, body):
    """Whatever the lines of a docstring: reading it raises nothing but Unreadable, and
    the updated literal (when there is one) still parses, to the same function."""
    from codemt.source.sections import Unreadable, read_docstring, render
    from codemt.write.templates import facts_of
    from codemt.write.upkeep import update

    text = "Summary.\n\n" + "\n".join(" " * n + line for n, line in lines)
    literal = '"""' + text.replace("\n", "\n    ") + '\n    """'
    source = f"def f({signature}):\n    {literal}\n    {body}\n"
    try:
        tree = ast.parse(source)
    except SyntaxError:
        event("not Python")
        return
    function = tree.body[0]
    try:
        doc = read_docstring(literal)
        new = update(doc, facts_of(function, is_method="self" in signature), function)
    except Unreadable:
        event("unreadable")
        return
    if new is None:
        event("in step")
        return
    event("updated")
    edited = source.replace(literal, render(doc, new), 1)
    after = ast.parse(edited).body[0]
    assert ast.get_docstring(after) is not None
    function.body, after.body = function.body[1:], after.body[1:]
    assert ast.dump(function) == ast.dump(after)
