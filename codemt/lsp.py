"""The language server: `codemt lsp`, code actions that write docstrings and bodies in any editor.

    codemt lsp [--model PATH|default] [--style google]

A pygls server over stdio. On a function without a docstring it offers the code action
"Generate docstring"; on a stub (a docstring and `...`, `pass` or `raise
NotImplementedError`) it offers "Generate body". Listing actions only parses the file;
the model runs when the editor resolves the chosen action (`codeAction/resolve`), which
returns the WorkspaceEdit, so moving the cursor around never waits for a model. The model
itself is loaded on the first resolve, so the editor starts the server instantly.

The edits are the smallest that insert the text (see `codemt.edits`): the rest of the file
keeps its bytes. Submitted code is parsed, never run.

Project memory (`codemt.memory`): for a model trained to read it, the workspace's documented
functions are indexed in the background when the editor has initialised the server (cached
on disk, so a restart reads only what changed), and a saved file is read again.
"""

from __future__ import annotations

import argparse
import ast
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemt import __version__, edits
from codemt.mine.extract import docstring_node
from codemt.translate import (
    DEFAULT_MODEL,
    GenerationSettings,
    Translation,
    Translator,
    add_model_arguments,
    generation_settings,
    resolve_style,
)

if TYPE_CHECKING:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from codemt.memory import ProjectMemory

# What each action writes: its title and whether a function qualifies for it.
ACTIONS: dict[str, tuple[str, Callable[[edits.Function], bool]]] = {
    "docstring": ("Generate docstring (codemt)", lambda node: docstring_node(node) is None),
    "body": ("Generate body (codemt)", edits.is_stub),
}
# LSP's error code for a request that was valid but failed (e.g. the model wrote nothing).
REQUEST_FAILED = -32803


@dataclass(frozen=True)
class LspSettings:
    """What the language server generates with.

    Attributes:
        model: checkpoint or run folder, or `default`.
        backend: what runs the model: auto, torch or ctranslate2 (see `Translator.load`).
        style: docstring style (summary, google, numpy, rest).
        generation: how to generate.
    """

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    style: str = "summary"
    generation: GenerationSettings = GenerationSettings()
    memory: bool = True  # the workspace's project memory, for a model that reads one

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
        from codemt.backends import read_meta, select_backend
        from codemt.translate import default_model_path, example_settings

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
    """A language server offering codemt's code actions (start it with `.start_io()`)."""
    from lsprotocol import types
    from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams
    from pygls.lsp.server import LanguageServer

    server = LanguageServer("codemt", __version__)
    model = _Model(settings.model, settings.backend)

    def build_memory() -> None:
        """The workspace's memory, off the message loop; the editor is told once if not."""
        from codemt.memory import open_memory

        root = server.workspace.root_path
        if not settings.memory or not root or not model.reads_neighbors():
            return

        class Options:
            memory, project = "project", root

        def say(line: str) -> None:
            server.window_log_message(
                types.LogMessageParams(type=types.MessageType.Info, message=line)
            )

        model.memory = open_memory(Options(), [root], say=say, progress=False)

    def opened(uri: str) -> Any:
        """The document the editor opened at `uri`, else None: the server never reads a
        file from disk for a request (an unopened `file:///etc/passwd`, say)."""
        from urllib.parse import unquote

        return server.workspace.text_documents.get(unquote(uri))

    @server.feature(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        threading.Thread(target=build_memory, name="codemt-memory", daemon=True).start()

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @server.thread()
    def saved(params: types.DidSaveTextDocumentParams) -> None:
        """A saved Python file of the workspace is read into the memory again."""
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
            for target, (title, applies) in ACTIONS.items()
            if applies(node)
        ]

    @server.feature(types.CODE_ACTION_RESOLVE)
    @server.thread()  # generation takes a while: the server keeps reading messages meanwhile
    def resolve(action: types.CodeAction) -> types.CodeAction:
        """Run the model and attach the edit that writes its text into the document."""
        data = action.data
        if not isinstance(data, dict) or not {"uri", "target", "line", "name"} <= set(data):
            raise JsonRpcInvalidParams("not an action of codemt's: ask for the actions again")
        if data["target"] not in ACTIONS or not isinstance(data["line"], int):
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
        if not ACTIONS[target][1](node):
            raise JsonRpcContentModified(f"{data['name']} no longer needs a {target}")
        style = settings.style if target == "docstring" else None
        # The document's own path: the memory never offers a function as its own neighbour.
        record = {**record, "path": document.path or ""}
        result = model.translate(record, target, style, settings.generation)
        try:
            if target == "docstring":
                edit = edits.docstring_edit(text, node, result.text)
            elif result.parsed:  # the best-scored candidate that parses, if any did
                edit = edits.body_edit(text, node, result.text)
            else:
                raise ValueError(
                    f"none of the {len(result.candidates)} bodies the model wrote for "
                    f"{data['name']} parses; try a larger --beams"
                )
        except ValueError as error:
            raise JsonRpcException(str(error), code=REQUEST_FAILED) from None
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


# ------------------------------------------------------------------ the command line


def _lsp_command(args: argparse.Namespace) -> int:
    try:
        from pygls.lsp.server import LanguageServer  # noqa: F401  (is the extra installed?)
    except ImportError:
        print(
            "codemt lsp: error: the language server needs the serve extra: "
            "pip install 'codemt[serve]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = LspSettings(
            model=args.model,
            backend=args.backend,
            style=args.style,
            generation=generation_settings(args, num_beams=args.beams),
            memory=args.memory != "none",
        )
        # Fail now, not on the first code action (the model loads then).
        from codemt.backends import select_backend
        from codemt.translate import default_model_path

        select_backend(
            default_model_path() if args.model == DEFAULT_MODEL else args.model, args.backend
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt lsp: error: {error}", file=sys.stderr)
        return 2
    create_server(settings).start_io()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt lsp` to the command line."""
    parser = subparsers.add_parser(
        "lsp",
        help="run the language server (stdio) for editors",
        description="A Language Server Protocol server over stdio, offering the code actions "
        "'Generate docstring' and 'Generate body' (on stubs). Needs the serve extra "
        "(pip install 'codemt[serve]').",
    )
    parser.add_argument(
        "--style",
        choices=["summary", "google", "numpy", "rest"],
        default="summary",
        help="docstring style (default: %(default)s)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--memory",
        choices=("project", "none"),
        default="project",
        help="project: write with the workspace's documented functions beside each one "
        "(default, for a model trained to read them); none: each function alone",
    )
    parser.set_defaults(func=_lsp_command)
