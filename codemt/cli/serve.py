"""`codemt serve` on the command line: its arguments, and the checks made before
the server starts (the work itself is `codemt.serve.app`)."""

from __future__ import annotations

import argparse
import sys

from codemt.cli.translate import add_model_arguments, open_memory
from codemt.serve.app import HostCheck, ServeSettings, create_app, host_name, is_loopback
from codemt.translate import Translator


def _serve_command(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print(
            "codemt serve: error: the server needs the serve extra: pip install 'codemt[serve]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = ServeSettings(
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            max_queue=args.max_queue,
            timeout_s=args.timeout,
            max_new_tokens=args.max_new_tokens,
        )
        for name in (args.host, *args.allow_host):  # before the model loads, which takes a while
            host_name(name)
        translator = Translator.load(args.model, backend=args.backend, threads=args.threads)
    except (ValueError, FileNotFoundError) as error:
        print(f"codemt serve: error: {error}", file=sys.stderr)
        return 2
    if args.project is not None:
        if not translator.reads_neighbors:
            print(
                f"codemt serve: {translator.path} was not trained to read project memory: "
                f"--project is ignored",
                file=sys.stderr,
            )
        else:
            translator.memory = open_memory(args, [args.project])
    if not is_loopback(args.host):
        print(
            f"codemt serve: warning: listening on {args.host}, not loopback; the server has no "
            f"authentication, so anyone who can reach this address can use it",
            file=sys.stderr,
        )
    print(f"codemt serve: {translator.path} on http://{args.host}:{args.port}/", file=sys.stderr)
    app = HostCheck(create_app(translator, settings), args.host, args.allow_host)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt serve` to the command line."""
    defaults = ServeSettings()
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: JSON API and a web playground",
        description="Serve a model over HTTP: POST /v1/translate, POST /v1/docstring, "
        "GET /v1/model, GET /health, GET /openapi.json, and a playground page at /. It answers "
        "requests addressed to its --host (or loopback names) and to --allow-host names only. "
        "Needs the serve extra (pip install 'codemt[serve]').",
    )
    add_model_arguments(parser, generation=False)
    parser.add_argument(
        "--project",
        metavar="DIR",
        default=None,
        help="answer with this project's memory: its documented functions most like each "
        "requested one are read beside it (requests may bring their own, `context`)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback)"
    )
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host header is NAME, e.g. a proxy's name (repeatable). "
        "Others are refused, so that pages of other sites cannot reach the server through DNS "
        "rebinding: only the --host, and localhost, 127.0.0.1 and [::1] on loopback, are accepted",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        metavar="N",
        help="most requests generated together; 1 turns batching off (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=defaults.batch_wait_ms,
        metavar="MS",
        help="how long a request waits for companions (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        metavar="N",
        help="most requests waiting; more get 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        metavar="S",
        help="seconds before a request gets 504 and is cancelled (default: %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        metavar="N",
        help="most new tokens a request may ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of the model (default: the backend's)",
    )
    parser.set_defaults(func=_serve_command)
