"""The HTTP server: `codemt serve`, its JSON API, the web playground and a dynamic batcher.

    codemt serve [--model PATH|default] [--host 127.0.0.1] [--port 8000]

Endpoints:

    POST /v1/translate   a function's source -> its docstring, body or signature
    POST /v1/docstring   a file and a line or function name -> the edited file and the edit
    POST /v1/lint        a file -> its docstrings' disagreements with the code (no model)
    POST /v1/update      a file and a function with a stale docstring -> the edited file
    GET  /v1/model       which model serves: name, preset, parameters, stage, modes
    GET  /openapi.json   the API's schema
    GET  /health         up, how busy, and the limits
    GET  /               the playground: a page to try the model in a browser

Requests that arrive together are generated together: the `Batcher` waits a few
milliseconds for companions, groups requests that ask for the same target, style and
settings, and runs each group as one `Translator.translate_batch` call in a worker thread
(so the event loop keeps accepting requests while the model runs). Under load a batch
costs little more than one request, so throughput grows with the number of clients.

The server only parses submitted code, it never runs it. It binds to the loopback
interface unless told otherwise, and it bounds what one request may ask for (source size,
new tokens, beams) and how many may wait (a full queue answers 503, a request that waits
too long 504, and its work is dropped if it has not started).

This module imports FastAPI and pydantic only when an app is made, so the command line
stays fast and works without the `serve` extra. That is also why it does not use
`from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime,
and they name the request models imported inside `create_app`.
"""

import asyncio
import contextlib
import ipaddress
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from codemt import __version__
from codemt.backends import CTRANSLATE2_SUBFOLDER
from codemt.examples import all_modes
from codemt.generation import GenerationSettings
from codemt.memory import neighbors_from_request
from codemt.serve.batcher import Batcher, BatchKey, BatchResult, Overloaded
from codemt.source.extract import docstring_node
from codemt.translate import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_DIRS,
    TARGETS,
    Translator,
    parse_method,
    resolve_style,
    source_features,
)
from codemt.write import edits, upkeep
from codemt.write.apply import SourceError
from codemt.write.templates import parse_descriptions

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it refuses.

    Attributes:
        max_batch: most requests generated together (1 turns batching off).
        batch_wait_ms: how long the first request of a batch waits for companions.
        max_queue: most requests waiting for a batch; more are refused with 503.
        timeout_s: a request not answered by then gets 504 (and is dropped if not started).
        max_source_bytes: largest function source of /v1/translate (UTF-8 bytes).
        max_file_bytes: largest file of /v1/docstring (UTF-8 bytes).
        max_new_tokens: most new tokens a request may ask for.
    """

    max_batch: int = 16
    batch_wait_ms: float = 10.0
    max_queue: int = 64
    timeout_s: float = 60.0
    max_source_bytes: int = 64 * 1024
    max_file_bytes: int = 1024 * 1024
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_source_bytes", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be 0 or more, got {self.batch_wait_ms}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: a file JSON-escaped at worst (six bytes a character), and some."""
        return 6 * max(self.max_file_bytes, self.max_source_bytes) + 64 * 1024


# ------------------------------------------------------------------ the app


def _finite(value: float) -> float | None:
    """JSON has no infinities: a score that is not finite is reported as null."""
    return value if math.isfinite(value) else None


def model_name(folder: Path) -> str:
    """How the server names the model loaded from `folder`: `default` for the shipped one,
    else the folder's name, after the run's for a checkpoint (`run/step-000040`) and the
    checkpoint's for an export (`run/step-000040/ctranslate2`).

    Never a path: a client has no need to know this machine's folders (its user name, say).
    """
    folder = folder.resolve()
    if any(folder.is_relative_to(shipped.resolve()) for shipped in DEFAULT_MODEL_DIRS):
        return DEFAULT_MODEL
    names = [folder.name]
    if folder.name == CTRANSLATE2_SUBFOLDER:  # an export, inside its checkpoint
        folder = folder.parent
        names.insert(0, folder.name)
    if folder.name.startswith("step-"):  # a checkpoint, inside its run
        names.insert(0, folder.parent.name)
    return "/".join(name for name in names if name)


def _model_info(translator: Translator) -> dict[str, Any]:
    from codemt.serve import api

    meta = translator.meta
    return {
        "name": model_name(translator.path),
        "preset": meta.get("preset"),
        "parameters": translator.parameters,
        "stage": meta.get("stage"),
        "backend": translator.backend.name,
        "real_words": translator.has_word_list,
        "device": str(translator.device),
        "targets": list(TARGETS),
        "styles": list(get_args(api.Style)),
        "modes": [mode.name for mode in all_modes()],
        "codemt_version": meta.get("codemt_version"),
        "reads_context": translator.reads_neighbors,
        "project_functions": len(translator.memory) if translator.memory is not None else 0,
    }


def playground_html() -> str:
    """The playground page, shipped in the package as `codemt/serve/static/playground.html`."""
    return resources.files("codemt.serve").joinpath("static/playground.html").read_text("utf-8")


class _BodyCheck:
    """ASGI middleware refusing bodies above a size, or not JSON, before anything reads them.

    Requests that send a body must declare its length: a chunked body of unknown size
    would have to be read to be measured, which is what this guards against. A body of
    another content type would be handed to the endpoints as bytes, and refused with a
    confusing message about fields.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        from starlette.responses import JSONResponse

        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None or not length.isdigit():
                response = JSONResponse({"detail": "send a Content-Length header"}, 411)
                return await response(scope, receive, send)
            if int(length) > self.max_bytes:
                detail = f"the request body is over this server's limit of {self.max_bytes} bytes"
                return await JSONResponse({"detail": detail}, 413)(scope, receive, send)
            media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media_type != b"application/json":
                detail = "send the body as JSON, with Content-Type: application/json"
                return await JSONResponse({"detail": detail}, 415)(scope, receive, send)
        await self.app(scope, receive, send)


# The names a loopback server answers to, as a Host header writes them.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A Host header: a name or a bracketed IPv6 address, then a port, which may be empty.
HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^\s:/@\[\]]+)(?::[0-9]*)?")


def host_name(host: str) -> str:
    """The name in a Host header or a host argument (`name[:port]`, or an IPv6 address bare or
    bracketed), in lower case, IPv6 bracketed as Host writes it; ValueError if it is none."""
    host = host.strip().lower()
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    match = HOST_HEADER.fullmatch(host)
    if match is None:
        raise ValueError(
            f"{host!r} is not a host name (expected a name or address, e.g. "
            f"localhost or docs.example.com, optionally with :port)"
        )
    return match.group(1)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostCheck:
    """ASGI middleware refusing (400) HTTP requests whose Host header names another server.

    It defeats DNS rebinding: a page of another site can reach a loopback server by making
    its own name resolve to 127.0.0.1, but the browser then sends that name as Host.
    Accepted: the host the server is bound to, the address a connection came in on (and
    `localhost`, `127.0.0.1`, `[::1]` when that address is loopback) and the names in
    `allow` (a proxy's); with any port or none, since a tunnel or proxy forwards from its own.
    Raises ValueError if `host` or a name of `allow` is not a host name.
    """

    def __init__(self, app: Any, host: str, allow: Sequence[str] = ()) -> None:
        self.app = app
        self.names = {host_name(host), *(host_name(name) for name in allow)}

    def refusal(self, hosts: list[str], local: tuple[str, int] | None) -> str | None:
        """Why a request with these Host headers, arrived on address `local`, is refused."""
        if len(hosts) != 1:
            return "send one Host header"
        try:
            name = host_name(hosts[0])
        except ValueError as error:
            return f"the Host header: {error}"
        names = set(self.names)
        if local is not None:
            with contextlib.suppress(ValueError):  # a Unix socket's path is no host
                names.add(host_name(local[0]))
            if is_loopback(local[0]):
                names.update(LOOPBACK_NAMES)
        if name in names:
            return None
        return (
            f"this server does not answer to {name!r} (a page of another site, through DNS "
            f"rebinding?); if a proxy of that name serves it, start it with --allow-host {name}"
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        from starlette.responses import JSONResponse

        if scope["type"] == "http":
            hosts = [value.decode("latin-1") for key, value in scope["headers"] if key == b"host"]
            detail = self.refusal(hosts, scope.get("server"))
            if detail is not None:
                return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(translator: Translator, settings: ServeSettings | None = None) -> "FastAPI":
    """The FastAPI app serving `translator` (see the module's docstring for the endpoints)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    from codemt.serve import api

    settings = settings or ServeSettings()
    batcher = Batcher(
        translator.translate_batch,
        max_batch=settings.max_batch,
        wait_s=settings.batch_wait_ms / 1000,
        max_queue=settings.max_queue,
    )
    model_info = _model_info(translator)
    page = playground_html()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    app = FastAPI(
        title="codemt",
        version=__version__,
        description="Translate between Python code and natural language (an open PyMT5).",
        lifespan=lifespan,
        # FastAPI's docs pages load their scripts from a CDN: blank offline, and a page of
        # ours running another site's code. The schema stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_BodyCheck, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, error: RequestValidationError) -> JSONResponse:
        """422 with where and what, without echoing the input (a NaN in it cannot be
        written as JSON, which made such requests fail with a 500)."""
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in error.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(Exception)
    async def failed(request: Any, error: Exception) -> JSONResponse:
        """A fault of the server's, not the request's: JSON like every answer, and without
        the error's text, which may name this machine's files (the log has it all)."""
        detail = f"the server failed ({type(error).__name__}); its log says why"
        return JSONResponse(status_code=500, content={"detail": detail})

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": api.Error, "description": why}
        for code, why in {
            400: "invalid input: not Python, no such function, settings that do not fit",
            409: "the function already has a docstring (/v1/update: it needs no update, or "
            "its sections cannot be read)",
            411: "no Content-Length",
            413: "the source, file or body is too large",
            415: "the body is not JSON",
            503: "the queue is full: retry later",
            504: "the request timed out and was cancelled",
            500: "a fault of the server's (its log says why)",
        }.items()
    }

    def generation(body: api.Generation) -> GenerationSettings:
        if body.max_new_tokens > settings.max_new_tokens:
            raise HTTPException(
                400,
                f"max_new_tokens {body.max_new_tokens} is above this server's limit of "
                f"{settings.max_new_tokens}",
            )
        options = body.model_dump(include=set(api.Generation.model_fields))
        if "num_beams" in body.model_fields_set:
            options["memory_beams"] = None  # a width asked for holds beside the summaries too
        if "name_weight" in body.model_fields_set:
            options["memory_name_weight"] = None  # so does a weight
        try:
            # batch_size is the server's; equal settings let requests share a batch.
            return GenerationSettings(**options, batch_size=settings.max_batch)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    def check_size(text: str, limit: int, what: str) -> None:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as error:  # JSON can carry lone surrogates; text cannot
            raise HTTPException(400, f"the {what} is not valid Unicode: {error.reason}") from None
        if size > limit:
            raise HTTPException(413, f"the {what} is {size} bytes, over the limit of {limit}")

    def with_context(record: dict[str, Any], body: api.WithContext) -> dict[str, Any]:
        """The record with the request's neighbours (data only: never a path to read)."""
        if body.context is None:
            return record  # the server's project memory, if it has one
        items = [item.model_dump() for item in body.context]
        try:
            return {**record, "neighbors": neighbors_from_request(items)}
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    async def generate(record: dict[str, Any], key: BatchKey) -> BatchResult:
        try:
            source_features(record, key.target)
            return await asyncio.wait_for(batcher.translate(record, key), settings.timeout_s)
        except Overloaded as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise HTTPException(
                504, f"no result within {settings.timeout_s:g} s; the request was cancelled"
            ) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    async def function_of(body: api.DocstringRequest | api.UpdateRequest) -> tuple[Any, dict]:
        """The function a request names in its file (its node and record), or a 400/413."""
        check_size(body.text, settings.max_file_bytes, "file")
        if body.line is None and body.function is None:
            raise HTTPException(400, "say which function: give its line, its name or both")
        try:
            functions = await asyncio.to_thread(edits.file_functions, body.text)
            return edits.find_function(functions, line=body.line, name=body.function)
        except (ValueError, LookupError) as error:
            raise HTTPException(400, str(error)) from None

    def api_edit(text: str, edit: edits.TextEdit) -> api.TextEdit:
        """An edit of `text` as the API gives it: an LSP range (UTF-16) and the new text."""
        start, end = edits.lsp_range(text, edit.start, edit.end)
        return api.TextEdit(
            range=api.Range(
                start=api.Position(line=start[0], character=start[1]),
                end=api.Position(line=end[0], character=end[1]),
            ),
            new_text=edit.new_text,
        )

    def timing(result: BatchResult, t0: float) -> api.Timing:
        return api.Timing(
            queued_ms=1000 * result.queued,
            generate_ms=1000 * result.generate,
            total_ms=1000 * (time.monotonic() - t0),
            batch_size=result.batch_size,
        )

    @app.post("/v1/translate", response_model=api.TranslateResponse, responses=errors)
    async def translate(body: api.TranslateRequest) -> api.TranslateResponse:
        """Write a function's docstring, body or signature."""
        t0 = time.monotonic()
        check_size(body.source, settings.max_source_bytes, "source")
        options = generation(body)
        try:
            style = resolve_style(body.target, body.style)
            # Parsing a large source takes a while: off the event loop.
            record = await asyncio.to_thread(parse_method, body.source)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        result = await generate(with_context(record, body), BatchKey(body.target, style, options))
        best = result.translation
        return api.TranslateResponse(
            text=best.text,
            target=body.target,
            style=style,
            score=_finite(best.score),
            parsed=best.parsed,
            candidates=[
                api.Candidate(text=c.text, score=_finite(c.score), parsed=c.parsed)
                for c in best.candidates
            ],
            origin=best.origin,
            timing=timing(result, t0),
        )

    async def edited(make: Callable[..., edits.TextEdit], *args: Any) -> edits.TextEdit:
        """The edit, made off the event loop (libcst and the verification take a while on a
        long file); 409 where the file cannot take it (it would change more than the
        docstring, or the text cannot be edited)."""
        try:
            return await asyncio.to_thread(make, *args)
        except ValueError as error:
            raise HTTPException(409, f"the file cannot be edited there: {error}") from None

    @app.post("/v1/docstring", response_model=api.DocstringResponse, responses=errors)
    async def docstring(body: api.DocstringRequest) -> api.DocstringResponse:
        """Write the docstring of one function of a file; return the edited file and the edit."""
        t0 = time.monotonic()
        options = generation(body)
        node, record = await function_of(body)
        if docstring_node(node) is not None:
            raise HTTPException(
                409, f"{record['name']} (line {node.lineno}) already has a docstring"
            )
        style = resolve_style("docstring", body.style)
        result = await generate(with_context(record, body), BatchKey("docstring", style, options))
        edit = await edited(edits.insert_docstring, body.text, node, result.translation.text)
        return api.DocstringResponse(
            function=record["name"],
            line=node.lineno,
            docstring=result.translation.text,
            origin=result.translation.origin,
            text=edit.apply(body.text),
            edit=api_edit(body.text, edit),
            timing=timing(result, t0),
        )

    def findings(text: str) -> tuple[Any, list[tuple[Any, Any]]]:
        """The file as a Source and its (function, finding) pairs; 400 if it does not parse."""
        try:
            source = upkeep.text_source(text, "request.py")
        except SourceError as error:
            raise HTTPException(
                400, f"the file does not parse: {error.message} (line {error.line})"
            ) from None
        found = upkeep.lint_sources([source], lambda f: True)
        return source, [(function, finding) for _, function, finding in found]

    @app.post("/v1/lint", response_model=api.LintResponse, responses=errors)
    async def lint(body: api.LintRequest) -> api.LintResponse:
        """Check a file's docstrings against its code, as `codemt docstring --lint`."""
        check_size(body.text, settings.max_file_bytes, "file")
        unknown = [
            c
            for c in [*body.select, *body.ignore]
            if not any(k.startswith(c) for k in upkeep.CODES)
        ]
        if unknown:
            raise HTTPException(400, f"no finding has the code {unknown[0]!r}")
        _, found = await asyncio.to_thread(findings, body.text)
        return api.LintResponse(
            findings=[
                api.Finding(line=f.line, function=f.name, code=x.code, message=x.message)
                for f, x in found
                if upkeep.codes_selected(x.code, body.select, body.ignore)
            ]
        )

    @app.post("/v1/update", response_model=api.UpdateResponse, responses=errors)
    async def update(body: api.UpdateRequest) -> api.UpdateResponse:
        """Bring one function's stale docstring in line with its code; the edited file."""
        t0 = time.monotonic()
        options = generation(body)
        node, record = await function_of(body)
        source, _ = await asyncio.to_thread(findings, body.text)
        try:
            stale = upkeep.stale_at(source, node.lineno)
        except upkeep.Unreadable as error:
            raise HTTPException(409, f"{record['name']}: {error}; left as it is") from None
        if stale is None:
            raise HTTPException(409, f"{record['name']} (line {node.lineno}) needs no update")
        descriptions, result = None, None
        if body.describe and stale.needs_descriptions:
            style = stale.doc.style
            result = await generate(record, BatchKey("docstring", style, options))
            descriptions = parse_descriptions(result.translation.text, style)
        try:
            literal = upkeep.updated_literal(stale, descriptions, width=88)
        except upkeep.Unreadable as error:
            raise HTTPException(409, f"{record['name']}: {error}; left as it is") from None
        if literal is None:
            raise HTTPException(409, f"{record['name']} (line {node.lineno}) needs no update")
        edit = await edited(edits.replace_docstring, body.text, node, literal)
        total = 1000 * (time.monotonic() - t0)
        return api.UpdateResponse(
            function=record["name"],
            line=node.lineno,
            fixed=[
                api.Finding(
                    line=node.lineno, function=record["name"], code=f.code, message=f.message
                )
                for f in stale.findings
            ],
            text=edit.apply(body.text),
            edit=api_edit(body.text, edit),
            timing=timing(result, t0)
            if result
            else api.Timing(queued_ms=0, generate_ms=0, total_ms=total, batch_size=0),
        )

    @app.get("/v1/model", response_model=api.ModelInfo)
    async def model() -> api.ModelInfo:
        """Which model serves."""
        return api.ModelInfo(**model_info)

    @app.get("/health", response_model=api.Health)
    async def health() -> api.Health:
        """The server is up: how busy it is, and its limits."""
        limits = api.Limits(
            max_source_bytes=settings.max_source_bytes,
            max_file_bytes=settings.max_file_bytes,
            max_new_tokens=settings.max_new_tokens,
            max_candidates=api.MAX_CANDIDATES,
            max_queue=settings.max_queue,
            timeout_s=settings.timeout_s,
        )
        return api.Health(status="ok", queued=batcher.queued, limits=limits)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> str:
        return page

    return app


@contextlib.contextmanager
def running_server(
    app: "FastAPI", host: str = "127.0.0.1", port: int = 0, allow_hosts: Sequence[str] = ()
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yield its base URL (port 0: any free one).

    For tests and for embedding the server in a program that does other things. Requests
    must name the server in their Host header (see `HostCheck`), or one of `allow_hosts`.
    """
    import uvicorn

    checked = HostCheck(app, host, allow_hosts)
    server = uvicorn.Server(uvicorn.Config(checked, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join()
