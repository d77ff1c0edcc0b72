"""`codemt lsp`: a real LSP client talks to the server over stdio in a subprocess."""

import ast
import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any

import pytest

pytest.importorskip("pygls", reason="the serve extra is not installed")

from codemt.lsp import function_at  # noqa: E402

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
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request and wait for its response (result or error), answering the server's
        own requests and skipping its notifications meanwhile."""
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.messages.get(timeout=120)
            if "method" in message and "id" in message:
                self.send({"id": message["id"], "result": None})
            elif message.get("id") == self.next_id:
                return message


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


@pytest.fixture(scope="module")
def client(tiny_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("lsp") / "stderr.log"
    with log.open("wb") as stderr:
        command = [sys.executable, "-m", "codemt.cli", "lsp", "--model", str(tiny_model)]
        client = LspClient([*command, "--beams", "4", "--max-new-tokens", "16"], stderr)
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
        yield client
        assert client.request("shutdown")["result"] is None
        client.notify("exit")
        assert client.process.wait(timeout=30) == 0, log.read_text()


def code_actions(client: LspClient, line: int, **context: Any) -> list[dict[str, Any]]:
    """The code actions offered at a 1-based line."""
    position = {"line": line - 1, "character": 4}
    response = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": URI},
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


def test_generate_body_on_a_stub(client):
    actions = code_actions(client, 15)
    assert [a["title"] for a in actions] == ["Generate body (codemt)"]
    response = client.request("codeAction/resolve", actions[0])
    if "error" in response:  # a tiny model may write no body that parses: said, not applied
        assert response["error"]["code"] == REQUEST_FAILED
        assert "parses" in response["error"]["message"]
        return
    (change,) = response["result"]["edit"]["documentChanges"]
    edited = apply_edits(DOCUMENT, change["edits"])
    method = ast.parse(edited).body[3].body[0]
    assert ast.get_docstring(method) == "Return the name."
    assert edited.startswith(DOCUMENT[: DOCUMENT.index("        raise")])
    assert "NotImplementedError" not in edited


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
