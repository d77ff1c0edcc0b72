"""Server throughput under load: requests/s and latency at 1, 4 and 16 clients, batching on and off.

`codemt serve` runs as a subprocess with a `small` model of random weights (speed does not
depend on what the weights learned; random weights hardly ever emit </s>, so every request
generates exactly `--max-new-tokens` tokens). Each client sends docstring requests for
real standard-library functions of a few lines one after another (a closed loop); a row
reports the requests per second over all clients and the median and 95th-percentile
latency. The same model is served twice, at once: with dynamic batching (`--max-batch 16`)
and without (`--max-batch 1`, one request at a time). Rows alternate between the two, so
that load from elsewhere on a shared machine falls on both alike; the ratio column compares
each row with the unbatched row at the same concurrency.

    python benchmarks/serve_load.py [--requests 32] [--max-new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from translate_speed import PRESET, SOURCES, STDLIB, random_model  # the benchmark beside this

CONCURRENCY = (1, 4, 16)
BATCHING = {1: "off (max batch 1)", 16: "on (max batch 16)"}
# Functions of a few lines: a docstring request's usual size, and generation, not the
# encoder reading a long input, dominates (as for translate_speed.py's methods).
MAX_LINES = 12


def function_sources(n: int) -> list[str]:
    """The source text of the first `n` short functions of a few standard-library modules."""
    found = []
    for name in SOURCES:
        text = (STDLIB / name).read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef) or len(node.body) < 2:
                continue
            if node.end_lineno - node.lineno < MAX_LINES:
                # padded: the first line keeps its indentation, so methods dedent cleanly
                found.append(ast.get_source_segment(text, node, padded=True))
    return found[:n]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, max_batch: int, threads: int) -> tuple[subprocess.Popen, str]:
    """`codemt serve` in a subprocess; returns it and its URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "codemt.cli", "serve", "--model", str(model)]
    command += ["--port", str(port), "--max-batch", str(max_batch), "--threads", str(threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}: {' '.join(command)}")
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not answer within 120 s")


async def load(url: str, sources: list[str], clients: int, options: dict) -> tuple[float, list]:
    """Send every source once, `clients` requests in flight; (requests/s, latencies in s)."""
    pending = list(sources)
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while pending:
            source = pending.pop()
            t0 = time.monotonic()
            response = await http.post(
                "/v1/translate", json={"source": source, "target": "docstring", **options}
            )
            response.raise_for_status()
            latencies.append(time.monotonic() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t0 = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.monotonic() - t0
    return len(sources) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per row")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--beams", type=int, default=1, help="beam width (1: greedy)")
    parser.add_argument(
        "--threads", type=int, default=1, help="the server's torch threads (1: steadier)"
    )
    parser.add_argument(
        "--tokenizer-files", type=int, default=200, help="stdlib files to train the BPE on"
    )
    args = parser.parse_args()
    sources = function_sources(args.requests)
    options = {"num_beams": args.beams, "max_new_tokens": args.max_new_tokens}

    rows: dict[tuple[int, int], tuple[float, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        vocab = random_model(Path(tmp), args.tokenizer_files)
        print(
            f"preset {PRESET} (random weights, vocabulary {vocab}), {len(sources)} stdlib "
            f"functions per row, docstrings of {args.max_new_tokens} tokens, beam {args.beams}, "
            f"server: {args.threads} torch thread(s), cpu"
        )
        servers = {b: start_server(Path(tmp) / "model", b, args.threads) for b in BATCHING}
        try:
            for _, url in servers.values():  # warm-up: first calls allocate
                asyncio.run(load(url, sources[:4], 4, options))
            for clients in CONCURRENCY:
                for max_batch, (_, url) in servers.items():
                    rows[max_batch, clients] = asyncio.run(load(url, sources, clients, options))
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait()

    print(
        f"{'batching':<20} {'clients':>7} {'requests/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'ratio':>6}"
    )
    for max_batch, name in BATCHING.items():
        for clients in CONCURRENCY:
            rate, latencies = rows[max_batch, clients]
            p50 = statistics.median(latencies)
            p95 = statistics.quantiles(latencies, n=20)[-1]
            ratio = rate / rows[1, clients][0]
            print(
                f"{name:<20} {clients:>7} {rate:>10.2f} {1000 * p50:>8.0f} {1000 * p95:>8.0f} "
                f"{ratio:>5.2f}x"
            )


if __name__ == "__main__":
    main()
