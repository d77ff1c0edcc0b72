"""The language server: `codemt lsp`, code actions that write docstrings and bodies in any editor.

    codemt lsp [--model PATH|default] [--style google]

A pygls server over stdio. On a function without a docstring it offers the code action
"Generate docstring"; on a stub (a docstring and `...`, `pass` or `raise
NotImplementedError`) it offers "Generate body"; on a docstring whose sections disagree
with the code, "Update docstring" (`codemt.write.upkeep`). Each finding of `codemt docstring
--lint` is a diagnostic of the open document, refreshed as it changes (`--no-lint`: none). Listing actions only parses the file;
the model runs when the editor resolves the chosen action (`codeAction/resolve`), which
returns the WorkspaceEdit, so moving the cursor around never waits for a model. The model
itself is loaded on the first resolve, so the editor starts the server instantly.

The edits are the smallest that insert the text (see `codemt.write.edits`): the rest of the file
keeps its bytes. Submitted code is parsed, never run.

Project memory (`codemt.memory`): for a model trained to read it, the workspace's documented
functions are indexed in the background when the editor has initialised the server (cached
on disk, so a restart reads only what changed), and a saved file is read again.

pygls handles the protocol, but the stream is read here (`MessageReader`, `serve`): every
request gets an answer, a result or an error, even one with params that do not fit its
method, and a message framed wrong (a missing or wrong Content-Length) is answered with a
parse error and skipped, where pygls's own reader lost every message after it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from codemt import __version__
from codemt.backends import read_meta, select_backend
from codemt.generation import GenerationSettings, Translation, borrowed_note
from codemt.memory import open_project_memory
from codemt.source.extract import docstring_node
from codemt.translate import (
    DEFAULT_MODEL,
    Translator,
    default_model_path,
    example_settings,
    resolve_style,
)
from codemt.write import edits, upkeep
from codemt.write.apply import SourceError
from codemt.write.templates import parse_descriptions

if TYPE_CHECKING:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from codemt.memory import ProjectMemory

logger = logging.getLogger(__name__)

# What each action writes: its title and whether a function qualifies for it.
ACTIONS: dict[str, tuple[str, Callable[[edits.Function], bool]]] = {
    "docstring": ("Generate docstring (codemt)", lambda node: docstring_node(node) is None),
    "body": ("Generate body (codemt)", edits.is_stub),
}
UPDATE = ("update", "Update docstring (codemt)")
# LSP's error code for a request that was valid but failed (e.g. the model wrote nothing).
REQUEST_FAILED = -32803
# JSON-RPC's error codes: bytes that are not JSON, JSON that is not a request, params that
# do not fit the method.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


@dataclass(frozen=True)
class LspSettings:
    """What the language server generates with.

    Attributes:
        model: checkpoint or run folder, or `default`.
        backend: what runs the model: auto, torch, torch-bf16, torch-int8 or ctranslate2
            (see `Translator.load`).
        style: docstring style (summary, google, numpy, rest).
        generation: how to generate.
    """

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    style: str = "summary"
    generation: GenerationSettings = GenerationSettings()
    memory: bool = True  # the workspace's project memory, for a model that reads one
    lint: bool = True  # publish `codemt docstring --lint`'s findings as diagnostics

    def __post_init__(self) -> None:
        resolve_style("docstring", self.style)  # raises ValueError naming the known styles


class _Model:
    """The translator, loaded on first use; one generation at a time (it uses every core)."""

    def __init__(self, path: str, backend: str) -> None:
        self.path = path
        self.backend = backend
        self.memory: ProjectMemory | None = None  # set once built, in the background
        self._translator: Translator | None = None
        self._lock = threading.Lock()

    def reads_neighbors(self) -> bool:
        """Whether the model reads project memory (read from its folder, not loaded)."""
        path = default_model_path() if self.path == DEFAULT_MODEL else self.path
        try:
            folder = select_backend(path, self.backend)[1]
            return example_settings(read_meta(folder)).neighbors > 0
        except (ValueError, FileNotFoundError, OSError):
            return False

    def translate(
        self,
        record: dict[str, Any],
        target: str,
        style: str | None,
        settings: GenerationSettings,
    ) -> Translation:
        """Translate one method with the model, loading it first if need be."""
        with self._lock:
            if self._translator is None:
                self._translator = Translator.load(self.path, backend=self.backend)
            return self._translator.translate_batch(
                [record], target, style, settings=settings, memory=self.memory
            )[0]


def function_at(tree: ast.Module, line: int) -> edits.Function | None:
    """The innermost function whose span (decorators included) holds 1-based `line`."""
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and edits.first_line(node) <= line <= (node.end_lineno or node.lineno)
    ]
    # Nested functions start later than the functions that hold them.
    return max(found, key=edits.first_line, default=None)


def _inside(path: str, root: Path) -> bool:
    """Whether a file is inside a folder (resolved, so a symlink out of it is not)."""
    try:
        Path(path).resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def create_server(settings: LspSettings) -> LanguageServer:
    """A language server offering codemt's code actions (run it with `serve`)."""
    from lsprotocol import types
    from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams
    from pygls.lsp.server import LanguageServer

    server = LanguageServer("codemt", __version__)
    model = _Model(settings.model, settings.backend)

    def build_memory() -> None:
        """The workspace's memory, off the message loop; the editor is told once if not."""
        root = server.workspace.root_path
        if not settings.memory or not root or not model.reads_neighbors():
            return

        def say(line: str) -> None:
            server.window_log_message(
                types.LogMessageParams(type=types.MessageType.Info, message=line)
            )

        model.memory = open_project_memory([root], project=Path(root), say=say, progress=False)

    def opened(uri: str) -> Any:
        """The document the editor opened at `uri`, else None: the server never reads a
        file from disk for a request (an unopened `file:///etc/passwd`, say)."""
        from urllib.parse import unquote

        return server.workspace.text_documents.get(unquote(uri))

    def publish(uri: str) -> None:
        """The document's lint findings as diagnostics (kept as they were while the text
        does not parse: half-typed code)."""
        document = opened(uri)
        if not settings.lint or document is None:
            return
        text = document.source
        try:
            source = upkeep.text_source(text, document.path or "untitled.py")
        except SourceError:
            return
        starts = edits.line_starts(text)
        diagnostics = []
        for _, function, finding in upkeep.lint_sources([source], lambda f: True):
            line = text[starts[function.line - 1] :].split("\n", 1)[0].rstrip("\r")
            begin = starts[function.line - 1] + len(line) - len(line.lstrip())
            start, end = edits.lsp_range(text, begin, begin + len(line.lstrip()))
            quiet = finding.code in ("DS001", "DS900")
            diagnostics.append(
                types.Diagnostic(
                    range=types.Range(
                        start=types.Position(line=start[0], character=start[1]),
                        end=types.Position(line=end[0], character=end[1]),
                    ),
                    message=finding.message,
                    severity=types.DiagnosticSeverity.Hint
                    if quiet
                    else types.DiagnosticSeverity.Warning,
                    code=finding.code,
                    source="codemt",
                )
            )
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=document.uri, diagnostics=diagnostics, version=document.version
            )
        )

    @server.feature(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        threading.Thread(target=build_memory, name="codemt-memory", daemon=True).start()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @server.thread()
    def saved(params: types.DidSaveTextDocumentParams) -> None:
        """A saved Python file of the workspace is read into the memory again."""
        publish(params.text_document.uri)
        memory = model.memory
        if memory is None:
            return
        from pygls.uris import to_fs_path

        path = to_fs_path(params.text_document.uri)
        if path and path.endswith(".py") and _inside(path, memory.root):
            memory.refresh(path)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True
        ),
    )
    def code_actions(params: types.CodeActionParams) -> list[types.CodeAction]:
        """The actions for the function under the cursor; without edits until resolved."""
        kind = types.CodeActionKind.RefactorRewrite
        only = params.context.only
        if only and not any(kind.value.startswith(wanted) for wanted in only):
            return []  # the editor asked for other kinds (quick fixes, say)
        document = opened(params.text_document.uri)
        if document is None:
            return []
        try:
            tree = ast.parse(document.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return []  # half-typed code: nothing to offer until it parses
        node = function_at(tree, params.range.start.line + 1)
        if node is None:
            return []
        offered = [(t, title) for t, (title, applies) in ACTIONS.items() if applies(node)]
        if docstring_node(node) is not None and stale(document, node) is not None:
            offered.append(UPDATE)
        return [
            types.CodeAction(
                title=title,
                kind=kind,
                data={
                    "uri": document.uri,
                    "target": target,
                    "line": node.lineno,
                    "name": node.name,
                },
            )
            for target, title in offered
        ]

    def stale(document: Any, node: edits.Function) -> upkeep.Stale | None:
        """The function's stale docstring, or None (in step, unreadable, not parsing)."""
        try:
            source = upkeep.text_source(document.source, document.path or "untitled.py")
            return upkeep.stale_at(source, node.lineno)
        except (SourceError, upkeep.Unreadable):
            return None

    def written(text: str, node: edits.Function, record: dict, target: str) -> edits.TextEdit:
        """The model's docstring or body for a function, as an edit of the text."""
        style = settings.style if target == "docstring" else None
        result = model.translate(record, target, style, settings.generation)
        try:
            if target == "docstring":
                edit = edits.insert_docstring(text, node, result.text)
                if result.origin:  # a sibling's: the editor says whose, once it is written
                    message = borrowed_note(record["name"], result.origin)
                    server.window_show_message(
                        types.ShowMessageParams(type=types.MessageType.Info, message=message)
                    )
                return edit
            if result.parsed:  # the best-scored candidate that parses, if any did
                return edits.replace_body(text, node, result.text)
            raise ValueError(
                f"none of the {len(result.candidates)} bodies the model wrote for "
                f"{record['name']} parses; try a larger --beams"
            )
        except ValueError as error:
            raise JsonRpcException(str(error), code=REQUEST_FAILED) from None

    def updated(document: Any, node: edits.Function, record: dict) -> edits.TextEdit:
        """The edit that brings a stale docstring in line with its code, new entries
        described by the model in the docstring's style."""
        found = stale(document, node)
        if found is None:
            raise JsonRpcContentModified(f"{node.name}'s docstring needs no update")
        descriptions = None
        if found.needs_descriptions:
            style = found.doc.style
            result = model.translate(record, "docstring", style, settings.generation)
            descriptions = parse_descriptions(result.text, style)
        try:
            literal = upkeep.updated_literal(found, descriptions, width=88)
        except upkeep.Unreadable as error:
            raise JsonRpcException(str(error), code=REQUEST_FAILED) from None
        if literal is None:
            raise JsonRpcContentModified(f"{node.name}'s docstring needs no update")
        return edits.replace_docstring(document.source, node, literal)

    @server.feature(types.CODE_ACTION_RESOLVE)
    @server.thread()  # generation takes a while: the server keeps reading messages meanwhile
    def resolve(action: types.CodeAction) -> types.CodeAction:
        """Run the model and attach the edit that writes its text into the document."""
        data = action.data
        if not isinstance(data, dict) or not {"uri", "target", "line", "name"} <= set(data):
            raise JsonRpcInvalidParams("not an action of codemt's: ask for the actions again")
        known = data["target"] in ACTIONS or data["target"] == UPDATE[0]
        if not known or not isinstance(data["line"], int):
            raise JsonRpcInvalidParams("not an action of codemt's: ask for the actions again")
        document = opened(data["uri"])
        if document is None:
            raise JsonRpcInvalidParams(f"{data['uri']} is not open in the editor")
        text = document.source
        target = data["target"]
        try:
            node, record = edits.find_function(edits.file_functions(text), line=data["line"])
        except (ValueError, LookupError):
            node = record = None
        if node is None or node.lineno != data["line"] or node.name != data["name"]:
            raise JsonRpcContentModified(f"{data['name']} moved or changed; ask again")
        # The document's own path: the memory never offers a function as its own neighbour.
        record = {**record, "path": document.path or ""}
        if target == UPDATE[0]:
            edit = updated(document, node, record)
        elif not ACTIONS[target][1](node):
            raise JsonRpcContentModified(f"{data['name']} no longer needs a {target}")
        else:
            edit = written(text, node, record, target)
        # Characters as the client counts them: UTF-16 unless it negotiated another encoding.
        encoding = types.PositionEncodingKind(server.workspace.position_encoding or "utf-16")
        start, end = edits.lsp_range(text, edit.start, edit.end, encoding.value)
        text_edit = types.TextEdit(
            range=types.Range(
                start=types.Position(line=start[0], character=start[1]),
                end=types.Position(line=end[0], character=end[1]),
            ),
            new_text=edit.new_text,
        )
        capabilities = server.client_capabilities.workspace
        if (
            capabilities
            and capabilities.workspace_edit
            and capabilities.workspace_edit.document_changes
        ):
            # A versioned edit: the client refuses it if the document changed meanwhile.
            identifier = types.OptionalVersionedTextDocumentIdentifier(
                uri=document.uri, version=document.version
            )
            action.edit = types.WorkspaceEdit(
                document_changes=[types.TextDocumentEdit(identifier, [text_edit])]
            )
        else:
            action.edit = types.WorkspaceEdit(changes={document.uri: [text_edit]})
        return action

    return server


# ------------------------------------------------------------------ the transport

# Larger messages are refused: a document is a text file, and its bytes are held in memory.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The header that says how long a message is. Anything may come before it on its line:
# the rest of a message whose length was said too short, or which said none.
CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.IGNORECASE)
# The same with a number, which no JSON can hold: in a string a line break is escaped.
NEXT_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*[0-9]+[ \t]*\r?\n", re.IGNORECASE)
# A line longer than this is no header: all but its end, where a header may begin, is dropped.
MAX_LINE = 64 * 1024
LINE_TAIL = 256


@dataclass(frozen=True)
class FramingError:
    """Bytes that were not a message, and why (the client is told, with id null)."""

    reason: str


class MessageReader:
    """Reads LSP messages (`Content-Length: N`, a blank line, N bytes of JSON) from a byte
    stream, and finds the next message after bytes that are not one.

    pygls's reader wedges on a missing or wrong length: it takes the next message's header
    for part of a body, or a body for headers, and so every message after. This one looks
    for the next `Content-Length` header wherever a line holds it; and since JSON holds no
    line break inside a string, a header inside a body shows that the body's length was
    said too long: the body ends there. A body that holds a whole JSON value and then more
    bytes is that value, and the bytes begin the next message. (A length said too long is
    found out when the next message comes: until then its body may still be arriving.)
    """

    def __init__(self, read: Callable[[int], bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._read = read  # up to n bytes as soon as there are some (os.read); b"" at the end
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._lost = False  # after bytes that were not a message, until the next header

    def next(self) -> Any | FramingError | None:
        """The next message (parsed JSON), a FramingError, or None at the end of the stream."""
        length = self._header()
        if length is None or isinstance(length, FramingError):
            return length
        if not length.isdigit() or int(length) > self.max_bytes:
            self._lost = True
            text = length.decode("latin-1")
            if text.isdigit():
                return FramingError(f"Content-Length {text} is over the limit of {self.max_bytes}")
            return FramingError(f"Content-Length {text!r} is not a number of bytes")
        body = self._body(int(length))
        return None if body is None else self._parse(body)

    def _fill(self) -> bool:
        chunk = self._read(1 << 16)
        self._buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes | None:
        """The next line, line break included (None at the end of the stream)."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_LINE:
                junk = bytes(self._buffer[:-LINE_TAIL])
                del self._buffer[:-LINE_TAIL]
                return junk
            if not self._fill():
                return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def _header(self) -> bytes | FramingError | None:
        """The Content-Length of the next header block, after skipping what is not one."""
        length = None
        block = False  # a header block has begun (some line that is not blank)
        while (line := self._line()) is not None:
            if match := CONTENT_LENGTH.search(line):
                length, block, self._lost = match.group(1), True, False
            elif line.strip():
                block = True
            elif length is not None:  # the blank line after the headers
                return length
            elif block and not self._lost:
                self._lost = True  # said once; the body that follows is skipped silently
                return FramingError("a message without a Content-Length header was skipped")
            else:
                block = False
        return None

    def _body(self, length: int) -> bytes | None:
        searched = 0
        while True:
            end = min(length, len(self._buffer))
            if match := NEXT_HEADER.search(self._buffer, max(searched - LINE_TAIL, 0), end):
                end = match.start()  # the next message's header: this one was said too long
                break
            if len(self._buffer) >= length:
                break
            searched = len(self._buffer)
            if not self._fill():
                return None
        body = bytes(self._buffer[:end])
        del self._buffer[:end]
        return body

    def _parse(self, body: bytes) -> Any | FramingError:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as error:
            reason = error
        try:  # a whole value, then the start of the next message
            text = body.decode("utf-8").lstrip()
            value, end = json.JSONDecoder().raw_decode(text)
        except (ValueError, RecursionError):
            self._lost = True
            return FramingError(f"a message that is not JSON was skipped ({reason})")
        self._buffer[:0] = text[end:].lstrip().encode("utf-8")
        return value


def _send_error(writer: Any, request_id: int | str | None, code: int, message: str) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    data = json.dumps(body).encode("utf-8")
    writer.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)


class _Dispatcher:
    """Hands messages to pygls, and answers those it would leave unanswered.

    pygls reads a request's params into their types while it parses the JSON, and when they
    do not fit it logs the error and answers nothing, so that the client waits for ever; it
    also drops requests after `shutdown` silently, where LSP wants an error.
    """

    def __init__(self, server: LanguageServer) -> None:
        self.protocol = server.protocol
        self.shut_down = False

    def handle(self, message: Any) -> None:
        """Handle one message of the client (or a FramingError in its place)."""
        from cattrs import transform_error
        from pygls.exceptions import JsonRpcException

        if isinstance(message, FramingError):
            return self.refuse(None, PARSE_ERROR, message.reason)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return self.refuse(None, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
        request_id = message.get("id")
        method = message.get("method")
        is_request = "id" in message and "method" in message
        if "id" in message and (
            not isinstance(request_id, int | str) or isinstance(request_id, bool)
        ):
            return self.refuse(None, INVALID_REQUEST, "a request's id is a number or a string")
        if "method" in message and not isinstance(method, str):
            return self.refuse(request_id, INVALID_REQUEST, "a request's method is a string")
        if is_request and self.shut_down and method != "exit":
            return self.refuse(request_id, INVALID_REQUEST, "the server is shutting down")
        try:
            structured = self.protocol.structure_message(message)
        except JsonRpcException as error:
            cause = error.__cause__
            why = "; ".join(transform_error(cause)) if cause is not None else error.message
            if is_request:
                self.refuse(request_id, INVALID_PARAMS, f"{method}: invalid params: {why}")
            else:
                logger.warning("%s: invalid params, ignored: %s", method, why)
            return
        self.protocol.handle_message(structured)
        if is_request and method == "shutdown":
            self.shut_down = True

    def refuse(self, request_id: int | str | None, code: int, message: str) -> None:
        """Answer a request (or, with id None, a message that no request can be told of)."""
        _send_error(self.protocol.writer, request_id, code, message)


def serve(server: LanguageServer, read: Callable[[int], bytes], output: BinaryIO) -> int:
    """Run `server` on a byte stream until the client says `exit` or the stream ends.

    `read(n)` returns up to n bytes as soon as there are some (`os.read` of a pipe), b"" at
    the end; `output` gets the server's messages. Returns the exit code: after `exit`, 0
    if `shutdown` came first, else 1 (as LSP says); at the end of the stream, 0.
    """
    from pygls.io_ import StdoutWriter

    server.protocol.set_writer(StdoutWriter(output))
    try:
        asyncio.run(_read_and_dispatch(server, MessageReader(read)))
    except SystemExit as exit:  # pygls's `exit` closes the output and exits
        return exit.code if isinstance(exit.code, int) else 1
    finally:
        server.shutdown()
    return 0


async def _read_and_dispatch(server: LanguageServer, reader: MessageReader) -> None:
    loop = asyncio.get_running_loop()
    messages: asyncio.Queue = asyncio.Queue()

    def read_all() -> None:
        # A daemon thread: a read that waits for the client never holds the process up.
        while True:
            try:
                message = reader.next()
            except Exception:  # a fault of ours: end as at the end of the stream, not hang
                logger.exception("reading the client's messages failed")
                message = None
            with contextlib.suppress(RuntimeError):  # the loop closed: the server exited
                loop.call_soon_threadsafe(messages.put_nowait, message)
            if message is None:
                return

    threading.Thread(target=read_all, name="codemt-lsp-reader", daemon=True).start()
    dispatcher = _Dispatcher(server)
    while (message := await messages.get()) is not None:
        try:
            dispatcher.handle(message)
        except Exception:  # pygls answers its handlers' errors; this is a fault of its own
            logger.exception("handling a message failed")
