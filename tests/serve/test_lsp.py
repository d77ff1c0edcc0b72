"""`codemt lsp`: a real LSP client talks to the server over stdio in a subprocess."""

import ast
import io
import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any

import pytest

pytest.importorskip("pygls", reason="the serve extra is not installed")

from codemt.serve.lsp import FramingError, MessageReader, function_at  # noqa: E402

URI = "file:///project/shapes.py"
DOCUMENT = '''import math


def area(radius):
    """Ça marche: the area of a circle."""
    return math.pi * radius ** 2


def perimeter(radius):  # no docstring
    return 2 * math.pi * radius


class Person:
    def get_name(self):
        """Return the name."""
        raise NotImplementedError
'''
REQUEST_FAILED = -32803


class LspClient:
    """A minimal JSON-RPC client: Content-Length framing over a subprocess's stdin/stdout."""

    def __init__(self, command: list[str], stderr, env: dict[str, str] | None = None) -> None:
        env = {**(env or os.environ), "OMP_NUM_THREADS": "1"}  # a tiny model on a busy machine
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        self.messages: queue.Queue = queue.Queue()
        self.skipped: list[dict[str, Any]] = []  # messages that answered no request of ours
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            headers = {}
            while (line := stream.readline().decode("ascii")) not in ("\r\n", ""):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return  # the server closed its output
            self.messages.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(framed(message))

    def send_bytes(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any = None, timeout: float = 120) -> dict[str, Any]:
        """Send a request and wait for its response (result or error), answering the server's
        own requests and keeping its other messages in `skipped` meanwhile."""
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.response(self.next_id, timeout)

    def response(self, request_id: int, timeout: float = 120) -> dict[str, Any]:
        """The response to a request already sent (waiting for it if need be)."""
        for message in self.skipped:
            if message.get("id") == request_id and "method" not in message:
                self.skipped.remove(message)
                return message
        while True:
            message = self.messages.get(timeout=timeout)
            if "method" in message and "id" in message:
                self.send({"id": message["id"], "result": None})
            elif message.get("id") == request_id and "method" not in message:
                return message
            else:
                self.skipped.append(message)


def framed(message: dict[str, Any]) -> bytes:
    """A JSON-RPC message as LSP frames it: a Content-Length header, a blank line, the JSON."""
    body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def apply_edits(text: str, edits: list[dict[str, Any]]) -> str:
    """Apply LSP TextEdits (UTF-16 positions), last first so earlier ranges stay valid."""
    lines = text.splitlines(keepends=True)

    def offset(position: dict[str, int]) -> int:
        line = lines[position["line"]] if position["line"] < len(lines) else ""
        prefix = line.encode("utf-16-le")[: 2 * position["character"]].decode("utf-16-le")
        return sum(len(x) for x in lines[: position["line"]]) + len(prefix)

    spans = [(offset(e["range"]["start"]), offset(e["range"]["end"]), e["newText"]) for e in edits]
    for start, end, new_text in sorted(spans, reverse=True):
        text = text[:start] + new_text + text[end:]
    return text


# `codemt lsp` with a stand-in for the model that writes known text: the server's own code
# runs as it does with a real model, and the tests know what the edits must be.
STUB_MODEL = """
import sys

from codemt import cli
from codemt.serve import lsp
from codemt.generation import Translation


class StubTranslator:
    @classmethod
    def load(cls, path, backend="auto"):
        return cls()

    def translate_batch(self, records, target, style, *, settings, memory=None):
        if target == "docstring":
            described = "Stub summary.\\n\\nArgs:\\n    name: The part to append."
            if style not in (None, "summary"):
                return [Translation(described, 0.0) for _ in records]
            # As if taken from a sibling's docstring (project memory).
            told = "the summary of perimeter_of (shapes.py:3), word for word"
            return [Translation("Stub summary.", 0.0, origin=told) for _ in records]
        # A body that parses, but for a function named to ask for one that does not.
        return [
            Translation("return (", 0.0, parsed=False)
            if record["name"].endswith("unparsable")
            else Translation("return self.name", 0.0, parsed=True)
            for record in records
        ]


lsp.Translator = StubTranslator
sys.exit(cli.main(sys.argv[1:]))
"""


def started(command: list[str], log) -> LspClient:
    """A language server started, initialised and given DOCUMENT."""
    client = LspClient(command, log)
    capabilities = {"workspace": {"workspaceEdit": {"documentChanges": True}}}
    initialized = client.request(
        "initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": capabilities}
    )
    assert initialized["result"]["capabilities"]["codeActionProvider"]["resolveProvider"]
    client.notify("initialized", {})
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": DOCUMENT}},
    )
    return client


def stopped(client: LspClient, log_path) -> None:
    """Shut the server down and check that it exits as LSP says (0 after shutdown)."""
    assert client.request("shutdown", timeout=30)["result"] is None
    client.notify("exit")
    assert client.process.wait(timeout=30) == 0, log_path.read_text()


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("lsp") / "stderr.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-m", "codemt.cli", "lsp", "--model", str(tiny_model)]
        client = started([*command, "--beams", "4", "--max-new-tokens", "16"], log)
        yield client
        stopped(client, log_path)


def stub_command(tiny_model) -> list[str]:
    return [sys.executable, "-c", STUB_MODEL, "lsp", "--model", str(tiny_model)]


@pytest.fixture(scope="module")
def stub_client(tiny_model, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("lsp") / "stderr.log"
    with log_path.open("wb") as log:
        client = started(stub_command(tiny_model), log)
        yield client
        stopped(client, log_path)


@pytest.fixture
def fresh_client(tiny_model, tmp_path):
    """A server of one's own, for tests that try to break it; stopped by the test."""
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        client = started(stub_command(tiny_model), log)
        client.log_path = log_path
        yield client
        if client.process.poll() is None:
            client.process.kill()


def code_actions(
    client: LspClient, line: int, uri: str = URI, **context: Any
) -> list[dict[str, Any]]:
    """The code actions offered at a 1-based line."""
    position = {"line": line - 1, "character": 4}
    response = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": {"start": position, "end": position},
            "context": {"diagnostics": [], **context},
        },
    )
    return response["result"] or []


def test_generate_docstring_on_resolve(client):
    actions = code_actions(client, 10)
    assert [a["title"] for a in actions] == ["Generate docstring (codemt)"]
    assert "edit" not in actions[0]  # the model runs on resolve only
    resolved = client.request("codeAction/resolve", actions[0])["result"]
    (change,) = resolved["edit"]["documentChanges"]
    assert change["textDocument"] == {"uri": URI, "version": 1}
    edited = apply_edits(DOCUMENT, change["edits"])
    perimeter = ast.parse(edited).body[2]
    assert perimeter.name == "perimeter" and ast.get_docstring(perimeter) is not None
    assert edited.replace(change["edits"][0]["newText"], "", 1) == DOCUMENT


def test_generate_body_on_a_stub(stub_client):
    actions = code_actions(stub_client, 15)
    assert [a["title"] for a in actions] == ["Generate body (codemt)"]
    resolved = stub_client.request("codeAction/resolve", actions[0])["result"]
    (change,) = resolved["edit"]["documentChanges"]
    assert change["textDocument"] == {"uri": URI, "version": 1}
    (edit,) = change["edits"]
    # The placeholder's lines, and only they, give way to the body, indented as the method.
    assert edit["range"] == {"start": {"line": 15, "character": 0},
                             "end": {"line": 15, "character": 33}}  # fmt: skip
    assert edit["newText"] == "        return self.name"
    edited = apply_edits(DOCUMENT, change["edits"])
    assert edited == DOCUMENT.replace("raise NotImplementedError", "return self.name")


def test_generate_docstring_with_a_known_model(stub_client):
    (action,) = code_actions(stub_client, 10)
    (change,) = stub_client.request("codeAction/resolve", action)["result"]["edit"][
        "documentChanges"
    ]
    edited = apply_edits(DOCUMENT, change["edits"])
    assert edited == DOCUMENT.replace(
        "# no docstring\n", '# no docstring\n    """Stub summary."""\n'
    )
    # A sibling's summary: the editor is told whose, to check it first.
    shown = [m for m in stub_client.skipped if m.get("method") == "window/showMessage"]
    assert shown and shown[-1]["params"]["message"].startswith(
        "perimeter: the summary of perimeter_of (shapes.py:3), word for word; check"
    )


def test_a_body_that_does_not_parse_is_refused(stub_client):
    uri = "file:///project/unfinished.py"
    text = 'def unparsable():\n    """Never written."""\n    ...\n'
    stub_client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
    )
    (action,) = code_actions(stub_client, 1, uri=uri)
    response = stub_client.request("codeAction/resolve", action)
    assert response["error"]["code"] == REQUEST_FAILED and "parses" in response["error"]["message"]


def test_no_action_where_nothing_is_missing(client):
    assert code_actions(client, 6) == []  # documented, with a body
    assert code_actions(client, 2) == []  # outside any function
    assert code_actions(client, 10, only=["quickfix"]) == []  # not the kind asked for
    assert len(code_actions(client, 10, only=["refactor"])) == 1


def test_function_at_picks_the_innermost():
    tree = ast.parse("def outer():\n    def inner():\n        pass\n    return inner\n")
    assert function_at(tree, 3).name == "inner"
    assert function_at(tree, 4).name == "outer"
    assert function_at(tree, 9) is None


def test_files_the_editor_did_not_open_are_never_read(client, tmp_path):
    secret = tmp_path / "secret.py"
    secret.write_text("def leak():\n    return 'secret'\n")
    position = {"line": 0, "character": 4}
    response = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": secret.as_uri()},
            "range": {"start": position, "end": position},
            "context": {"diagnostics": []},
        },
    )
    assert response["result"] in (None, [])
    forged = {"title": "x", "data": {"uri": secret.as_uri(), "target": "docstring",
                                     "line": 1, "name": "leak"}}  # fmt: skip
    answer = client.request("codeAction/resolve", forged)
    assert answer["error"]["code"] == -32602 and "not open" in answer["error"]["message"]
    for data in ({"uri": URI}, "nonsense", {"uri": URI, "target": "x", "line": 1, "name": "f"}):
        answer = client.request("codeAction/resolve", {"title": "x", "data": data})
        assert answer["error"]["code"] == -32602
        assert "Traceback" not in answer["error"]["message"]


# ------------------------------------------------------------------ a client that errs


PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("textDocument/codeAction", {}),
        ("textDocument/codeAction", {"textDocument": {"uri": URI}}),  # no range
        ("textDocument/codeAction", None),
        ("textDocument/codeAction", [1, 2]),
        ("codeAction/resolve", "nonsense"),
        ("codeAction/resolve", {"data": {"uri": URI}}),  # no title
        ("textDocument/codeAction", {"textDocument": {"uri": URI}, "context": {"diagnostics": []},
                                     "range": {"start": {"line": -1, "character": 0},
                                               "end": {"line": 0, "character": 0}}}),
    ],
)  # fmt: skip
def test_requests_with_bad_params_are_answered(stub_client, method, params):
    response = stub_client.request(method, params, timeout=20)
    assert response["error"]["code"] == INVALID_PARAMS, response
    assert "Traceback" not in response["error"]["message"]
    assert len(code_actions(stub_client, 10)) == 1  # and the server goes on


def test_a_message_that_is_no_request_is_answered(stub_client):
    for message in (b"[]", b'"hello"', b'{"id": 7, "method": 3}', b'{"jsonrpc": "1.0", "id": 8}'):
        stub_client.send_bytes(b"Content-Length: %d\r\n\r\n" % len(message) + message)
    assert len(code_actions(stub_client, 10)) == 1
    errors = [m["error"]["code"] for m in stub_client.skipped[-4:]]
    assert errors == [INVALID_REQUEST] * 4


def _request(request_id: int) -> dict[str, Any]:
    position = {"line": 9, "character": 4}
    return {
        "id": request_id,
        "method": "textDocument/codeAction",
        "params": {
            "textDocument": {"uri": URI},
            "range": {"start": position, "end": position},
            "context": {"diagnostics": []},
        },
    }


def _headers(length: bytes, body: bytes, newline: bytes = b"\r\n") -> bytes:
    return b"Content-Length: " + length + newline + newline + body


BODY = framed(_request(100)).split(b"\r\n\r\n", 1)[1]
# Messages framed wrong, whether the server can still answer them, and what it says if not.
BAD_FRAMES = {
    "no Content-Length": (b"Content-Type: application/json\r\n\r\n" + BODY, False),
    "a length too long": (_headers(b"%d" % (len(BODY) + 40), BODY), True),
    "a length 3 bytes too long": (_headers(b"%d" % (len(BODY) + 3), BODY), True),
    "a length too short": (_headers(b"%d" % (len(BODY) - 10), BODY), False),
    "a length of 0": (_headers(b"0", BODY), False),
    "a length that is no number": (_headers(b"ten", BODY), False),
    "a length of a terabyte": (_headers(b"1000000000000", BODY), False),
    "a body that is not JSON": (_headers(b"12", b"hello world!"), False),
    "lines ended by LF alone": (_headers(b"%d" % len(BODY), BODY, b"\n"), True),
    "a header in lower case": (b"content-length: %d\r\n\r\n" % len(BODY) + BODY, True),
    "bytes before the header": (b"garbage\r\n" + framed(_request(100)), True),
}


@pytest.mark.parametrize("frame", BAD_FRAMES, ids=list(BAD_FRAMES))
def test_a_framing_error_does_not_wedge_the_server(fresh_client, frame):
    data, answerable = BAD_FRAMES[frame]
    fresh_client.send_bytes(data)
    fresh_client.send(_request(101))
    # The next request is answered; the broken one too where its JSON could be read.
    assert fresh_client.response(101, timeout=20)["result"][0]["title"].startswith("Generate")
    if answerable:
        assert fresh_client.response(100, timeout=20)["result"]
    else:
        (error,) = [
            m["error"] for m in fresh_client.skipped if "error" in m and m.get("id") is None
        ]
        assert error["code"] == PARSE_ERROR and error["message"]
    # Requests after shutdown are refused, exit is obeyed.
    assert fresh_client.request("shutdown", timeout=20)["result"] is None
    refused = fresh_client.request("textDocument/codeAction", _request(0)["params"], timeout=20)
    assert refused["error"]["code"] == INVALID_REQUEST
    fresh_client.notify("exit")
    assert fresh_client.process.wait(timeout=20) == 0, fresh_client.log_path.read_text()


def read_all(data: bytes, chunk: int = 1 << 16, max_bytes: int = 1 << 20) -> list[Any]:
    """Every message a MessageReader finds in `data`, read `chunk` bytes at a time."""
    stream = io.BytesIO(data)
    reader = MessageReader(lambda n: stream.read(min(n, chunk)), max_bytes=max_bytes)
    return list(iter(reader.next, None))


def test_messages_are_read_however_the_bytes_arrive():
    messages = [_request(i) for i in range(3)]
    data = b"".join(framed(m) for m in messages)
    expected = [{"jsonrpc": "2.0", **m} for m in messages]
    assert read_all(data) == read_all(data, chunk=1) == expected


def test_a_body_may_span_lines_and_mention_the_header():
    # Pretty-printed JSON: line breaks between tokens, and the header's words in a string.
    body = json.dumps({"jsonrpc": "2.0", "method": "m", "params": {"text": "Content-Length: 5"}},
                      indent=2).replace('"Content-Length: 5"', '"content-length: 5\\r\\n"')  # fmt: skip
    data = b"Content-Length: %d\r\n\r\n" % len(body) + body.encode() + framed(_request(1))
    messages = read_all(data, chunk=7)
    assert messages == [json.loads(body), {"jsonrpc": "2.0", **_request(1)}]


def test_what_is_no_message_is_said_once_and_skipped():
    junk = b"x" * 200_000  # a line longer than any header, with no line break
    deep = b"[" * 100_000 + b"]" * 100_000
    data = (
        junk + framed(_request(1))
        + b"Content-Length: %d\r\n\r\n" % len(deep) + deep + framed(_request(2))
        + b"Content-Length: 2000000\r\n\r\n{}" + framed(_request(3))
    )  # fmt: skip
    messages = read_all(data, chunk=1000)
    assert [m.get("id") if isinstance(m, dict) else type(m) for m in messages] == [
        1, FramingError, 2, FramingError, 3
    ]  # fmt: skip
    assert "not JSON" in messages[1].reason and "over the limit" in messages[3].reason


STALE_URI = "file:///project/paths.py"
STALE = '''def join(base, name):
    """Join two parts.

    Args:
        other: Gone.
        base: The base.
    """
    return base + name


def ok(a):
    """Fine.

    Args:
        a: A.
    """
    print(a)
'''


def diagnostics_of(client: LspClient, uri: str, version: int) -> list[dict[str, Any]]:
    """The diagnostics the server published for a version of a document."""
    while True:
        for message in client.skipped:
            params = message.get("params") or {}
            published = message.get("method") == "textDocument/publishDiagnostics"
            if published and params["uri"] == uri and params.get("version") == version:
                client.skipped.remove(message)
                return params["diagnostics"]
        message = client.messages.get(timeout=20)
        client.skipped.append(message)


def test_lint_findings_are_diagnostics_and_a_stale_docstring_is_updated(stub_client):
    document = {"uri": STALE_URI, "languageId": "python", "version": 1, "text": STALE}
    stub_client.notify("textDocument/didOpen", {"textDocument": document})
    found = diagnostics_of(stub_client, STALE_URI, 1)
    assert [(d["code"], d["range"]["start"]["line"]) for d in found] == [
        ("DS101", 0),
        ("DS102", 0),
        ("DS201", 0),
    ]
    assert found[0]["source"] == "codemt" and found[0]["range"]["end"]["character"] == 21
    actions = code_actions(stub_client, 1, uri=STALE_URI)
    assert [a["title"] for a in actions] == ["Update docstring (codemt)"]
    assert code_actions(stub_client, 12, uri=STALE_URI) == []  # in step
    resolved = stub_client.request("codeAction/resolve", actions[0])["result"]
    (change,) = resolved["edit"]["documentChanges"]
    edited = apply_edits(STALE, change["edits"])
    # `other` was renamed `name` (one gone, one new): its description carried over.
    assert edited == STALE.replace(
        "        other: Gone.\n        base: The base.\n",
        "        base: The base.\n        name: Gone.\n",
    )
    # The document changes: its diagnostics follow.
    stub_client.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": STALE_URI, "version": 2},
            "contentChanges": [{"text": edited}],
        },
    )
    assert [d["code"] for d in diagnostics_of(stub_client, STALE_URI, 2)] == ["DS201"]
