"""`codemt serve`: the dynamic batcher, the JSON API against its own OpenAPI schema, limits."""

import ast
import asyncio
import json
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
jsonschema = pytest.importorskip("jsonschema")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from codemt.generation import GenerationSettings, Translation  # noqa: E402
from codemt.serve.app import (  # noqa: E402
    HostCheck,
    ServeSettings,
    create_app,
    host_name,
    model_name,
    running_server,
)
from codemt.serve.batcher import Batcher, BatchKey, Overloaded  # noqa: E402
from codemt.translate import Translator  # noqa: E402

FAST = {"num_beams": 1, "max_new_tokens": 12}
ADD = "def add(a, b):\n    total = a + b\n    return total\n"
FILE = '''import math


class Circle:
    """A circle."""

    def __init__(self, radius):
        self.radius = radius

    def diameter(self):
        """Twice the radius."""
        return 2 * self.radius

    def area(self):  # comment stays
        return math.pi * self.radius ** 2
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def translator(tiny_model):
    return Translator.load(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def client(translator):
    with TestClient(create_app(translator)) as client:
        yield client


def checked(client, method: str, path: str, status: int, **kwargs) -> dict:
    """Send a request; check its status and that its body matches the app's OpenAPI schema."""
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    schema = client.app.openapi()
    declared = schema["paths"][path][method.lower()]["responses"][str(status)]
    body_schema = declared["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**body_schema, "components": schema["components"]}).validate(
        body := response.json()
    )
    return body


# ------------------------------------------------------------------ the batcher


class FakeModel:
    """Records each batch it gets; translates a record into its name after `delay` seconds."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[list[str]] = []

    def translate_batch(self, methods, target, style, *, settings):
        names = [m["name"] for m in methods]
        self.batches.append(names)
        time.sleep(self.delay)
        if self.fail_on in names:
            raise ValueError(f"cannot read {self.fail_on}")
        return [Translation(f"{target}:{name}", 0.0) for name in names]


KEY = BatchKey("docstring", "summary", GenerationSettings())


async def _run(batcher: Batcher, requests) -> list:
    worker = asyncio.create_task(batcher.run())
    try:
        return await asyncio.gather(*requests, return_exceptions=True)
    finally:
        worker.cancel()


def test_concurrent_requests_share_a_batch_per_key():
    model = FakeModel()
    batcher = Batcher(model.translate_batch, max_batch=16, wait_s=0.05)
    other = BatchKey("body", None, GenerationSettings())
    requests = [batcher.translate({"name": f"f{i}"}, KEY) for i in range(6)]
    requests += [batcher.translate({"name": "g"}, other)]
    results = asyncio.run(_run(batcher, requests))
    assert [r.translation.text for r in results] == [f"docstring:f{i}" for i in range(6)] + [
        "body:g"
    ]
    assert sorted(model.batches) == sorted([[f"f{i}" for i in range(6)], ["g"]])
    assert [r.batch_size for r in results] == [6] * 6 + [1]


def test_max_batch_one_runs_requests_alone():
    model = FakeModel()
    batcher = Batcher(model.translate_batch, max_batch=1, wait_s=0.05)
    asyncio.run(_run(batcher, [batcher.translate({"name": f"f{i}"}, KEY) for i in range(4)]))
    assert model.batches == [["f0"], ["f1"], ["f2"], ["f3"]]


def test_a_request_that_times_out_before_its_batch_is_dropped():
    model = FakeModel(delay=0.3)
    batcher = Batcher(model.translate_batch, max_batch=1, wait_s=0)

    async def scenario():
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.translate({"name": "slow"}, KEY))
        await asyncio.sleep(0.05)  # "slow" is running
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.translate({"name": "late"}, KEY), 0.05)
        await first
        await asyncio.sleep(0.05)
        worker.cancel()

    asyncio.run(scenario())
    assert model.batches == [["slow"]]


def test_a_full_queue_refuses_requests():
    batcher = Batcher(FakeModel().translate_batch, max_queue=2)

    async def scenario():
        # No worker runs, so the first two wait for ever.
        waiting = [asyncio.create_task(batcher.translate({"name": n}, KEY)) for n in "ab"]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="busy"):
            await batcher.translate({"name": "c"}, KEY)
        for task in waiting:
            task.cancel()

    asyncio.run(scenario())


def test_a_failing_request_does_not_fail_its_batchmates():
    model = FakeModel(fail_on="bad")
    batcher = Batcher(model.translate_batch, max_batch=8, wait_s=0.05)
    names = ["a", "bad", "c"]
    results = asyncio.run(_run(batcher, [batcher.translate({"name": n}, KEY) for n in names]))
    assert results[0].translation.text == "docstring:a"
    assert isinstance(results[1], ValueError)
    assert results[2].translation.text == "docstring:c"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ServeSettings(timeout_s=0)


# ------------------------------------------------------------------ the API


def test_health_and_model_identity(client, tiny_model):
    health = checked(client, "GET", "/health", 200)
    assert health["status"] == "ok" and health["limits"]["max_new_tokens"] == 256
    model = checked(client, "GET", "/v1/model", 200)
    assert model["preset"] == "tiny" and model["stage"] == "multimode"
    assert model["parameters"] > 1000 and model["name"] == f"{tiny_model.name}/step-000040"
    assert "signature+body->docstring" in model["modes"]


def test_no_response_reveals_where_the_model_lives(client, translator, tiny_model):
    responses = [
        client.get(path) for path in ("/v1/model", "/health", "/openapi.json", "/", "/nowhere")
    ]
    responses.append(client.post("/v1/translate", json={"source": "x = 1", "target": "body"}))
    folders = {str(translator.path), str(tiny_model), str(tiny_model.parent)}
    for response in responses:
        assert not any(folder in response.text for folder in folders), response.url


def test_model_names_are_folder_names_never_paths(tmp_path):
    from codemt.translate import DEFAULT_MODEL_DIRS

    assert model_name(DEFAULT_MODEL_DIRS[0]) == "default"
    assert model_name(DEFAULT_MODEL_DIRS[0] / "ctranslate2") == "default"
    assert model_name(tmp_path / "home" / "me" / "my-model") == "my-model"
    run = tmp_path / "runs" / "docstrings"
    assert model_name(run / "step-000100") == "docstrings/step-000100"
    assert model_name(run / "step-000100" / "ctranslate2") == "docstrings/step-000100/ctranslate2"


def test_docs_pages_are_off_and_the_schema_stays(client):
    # FastAPI's pages load their scripts from a CDN: blank offline, someone else's code.
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    schema = client.get("/openapi.json").json()
    assert "/v1/translate" in schema["paths"] and "/docs" not in schema["paths"]


@pytest.mark.parametrize("target", ["docstring", "body", "signature"])
def test_translate_every_target(client, translator, target):
    body = checked(
        client, "POST", "/v1/translate", 200, json={"source": ADD, "target": target, **FAST}
    )
    settings = GenerationSettings(num_beams=1, max_new_tokens=12)
    assert body["text"] == translator.translate(ADD, target, settings=settings)
    assert body["timing"]["batch_size"] == 1 and body["timing"]["total_ms"] > 0
    assert (body["parsed"] is None) == (target == "docstring")
    assert body["origin"] == ""  # the model wrote it: the tiny model reads no neighbours


def test_a_docstring_that_is_a_siblings_summary_says_whose(translator, monkeypatch):
    sibling = "the summary of subtract (calc.py:4), its names adapted"

    def borrowed(methods, target, style=None, **kwargs):
        return [Translation("Subtract two numbers.", -0.5, origin=sibling) for _ in methods]

    monkeypatch.setattr(translator, "translate_batch", borrowed)
    with TestClient(create_app(translator)) as borrowing:
        request = {"source": ADD, "target": "docstring", **FAST}
        assert checked(borrowing, "POST", "/v1/translate", 200, json=request)["origin"] == sibling
        request = {"text": ADD, "function": "add", **FAST}
        body = checked(borrowing, "POST", "/v1/docstring", 200, json=request)
    assert body["origin"] == sibling and body["docstring"] == "Subtract two numbers."


def test_a_beam_width_or_name_weight_asked_for_holds_beside_the_projects_summaries(
    client, monkeypatch
):
    from codemt.serve.batcher import Batcher

    seen = []
    translate = Batcher.translate

    async def spy(self, record, key):
        s = key.settings
        seen.append((s.num_beams, s.memory_beams, s.name_weight, s.memory_name_weight))
        return await translate(self, record, key)

    monkeypatch.setattr(Batcher, "translate", spy)
    body = {"source": ADD, "target": "docstring", "max_new_tokens": 8}
    checked(client, "POST", "/v1/translate", 200, json=body)
    checked(client, "POST", "/v1/translate", 200, json={**body, "num_beams": 2})
    checked(client, "POST", "/v1/translate", 200, json={**body, "name_weight": 1})
    assert seen == [(4, 1, 2, 6), (2, None, 2, 6), (4, 1, 1, None)]


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"source": "this is not python", "target": "docstring"}, 400, "not"),
        ({"source": "x = 1\n", "target": "docstring"}, 400, "not a function definition"),
        ({"source": ADD, "target": "tests"}, 422, "target"),
        ({"source": ADD, "target": "body", "style": "google"}, 400, "docstrings only"),
        ({"source": ADD, "target": "body", "max_new_tokens": 5000}, 400, "limit of 256"),
        ({"source": ADD, "target": "body", "num_beams": 50}, 422, "num_beams"),
        ({"source": ADD, "target": "body", "sample": True, "num_beams": 2}, 400, "num_beams=1"),
        ({"source": ADD, "target": "body", "beams": 2}, 422, "beams"),
        ({"source": "def f(): pass\n" * 6000, "target": "docstring"}, 413, "65536"),
    ],
)
def test_invalid_input_gets_a_clear_4xx(client, request_body, status, message):
    body = checked(client, "POST", "/v1/translate", status, json={**FAST, **request_body})
    assert message in str(body["detail"])


def test_a_lone_surrogate_is_invalid_input(client):
    # JSON may escape a lone surrogate, which no encoder can write; json= would refuse it.
    raw = b'{"source": "def f(x):\\n    return \'\\ud800\'\\n", "target": "body"}'
    headers = {"Content-Type": "application/json"}
    body = checked(client, "POST", "/v1/translate", 400, content=raw, headers=headers)
    assert "not valid Unicode" in body["detail"]


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"def f(): pass", JSON, 422),  # not JSON
        (b'{"source": "def f(): pass", "target": "body"', JSON, 422),  # cut short
        (b"[]", JSON, 422),
        (b"null", JSON, 422),
        (b'{"source": "def f(): pass", "target": "body"}', {"Content-Type": "text/plain"}, 415),
        (b'{"source": "def f(): pass", "target": "body"}', {}, 415),
        (b"source=def+f%28%29&target=body", {"Content-Type": "x-www-form-urlencoded"}, 415),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400),  # nested past the JSON parser's depth
        (
            b'{"source": "x", "target": "body", "context": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            JSON,
            400,
        ),
        (b'{"source": "\xff\xfe", "target": "body"}', JSON, 400),  # not UTF-8
    ],
)
def test_bodies_that_are_not_a_request_get_a_json_4xx(client, content, headers, status):
    for path in ("/v1/translate", "/v1/docstring"):
        body = checked(client, "POST", path, status, content=content, headers=headers)
        assert body["detail"]
    assert client.get("/health").status_code == 200


def test_a_temperature_too_small_to_sample_with_is_refused(client):
    # 1e-300 is 0 in float32: the logits divided by it made sampling fail with a 500.
    body = {"source": ADD, "target": "docstring", **FAST, "sample": True, "temperature": 1e-300}
    detail = checked(client, "POST", "/v1/translate", 422, json=body)["detail"]
    assert detail[0]["loc"][-1] == "temperature"


def test_a_fault_of_the_server_is_a_json_500_that_names_no_file(translator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot read /home/someone/models/secret/model.safetensors")

    monkeypatch.setattr(translator, "translate_batch", broken)
    with TestClient(create_app(translator), raise_server_exceptions=False) as faulty:
        body = checked(
            faulty, "POST", "/v1/translate", 500, json={"source": ADD, "target": "body", **FAST}
        )
    assert "RuntimeError" in body["detail"] and "/home" not in body["detail"]


def test_a_body_too_large_is_refused_before_it_is_read(translator):
    app = create_app(translator, ServeSettings(max_source_bytes=100, max_file_bytes=100))
    with TestClient(app) as small:
        body = checked(small, "POST", "/v1/translate", 413, content=b"x" * 700_000)
    assert "limit" in body["detail"]


def test_submitted_code_is_never_run(client, tmp_path):
    marker = tmp_path / "ran"
    source = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
        f"def f(x=pathlib.Path({str(marker)!r}).write_text('y')):\n"
        f"    return __import__('os').system('touch {marker}')\n"
    )
    checked(client, "POST", "/v1/translate", 200, json={"source": source, "target": "body", **FAST})
    checked(client, "POST", "/v1/docstring", 200, json={"text": source, "line": 3, **FAST})
    assert not marker.exists()


def test_docstring_edits_a_file(client):
    body = checked(
        client, "POST", "/v1/docstring", 200, json={"text": FILE, "function": "Circle.area", **FAST}
    )
    assert body["function"] == "Circle.area" and body["line"] == 14
    edited = body["text"]
    tree = ast.parse(edited)
    area = tree.body[1].body[3]
    assert ast.get_docstring(area) == body["docstring"]
    assert "# comment stays" in edited and edited.startswith(FILE[: FILE.index("    def area")])
    # The edit, applied by line and character as a client does, gives the same file.
    lines = FILE.splitlines(keepends=True)
    start, end = body["edit"]["range"]["start"], body["edit"]["range"]["end"]
    offset = [sum(len(line) for line in lines[: p["line"]]) + p["character"] for p in (start, end)]
    assert FILE[: offset[0]] + body["edit"]["new_text"] + FILE[offset[1] :] == edited


def test_docstring_refusals(client):
    def refused(status: int, **request) -> str:
        return checked(client, "POST", "/v1/docstring", status, json={**FAST, **request})["detail"]

    assert "already has a docstring" in refused(409, text=FILE, line=12)
    assert "Circle.area" in refused(400, text=FILE, function="area")
    assert "line 1" in refused(400, text="def f(:\n", line=1)
    assert "line, its name" in refused(400, text=FILE)


def test_a_request_that_takes_too_long_gets_504(translator, monkeypatch):
    def slow(*args, **kwargs):
        time.sleep(0.5)
        return Translator.translate_batch(translator, *args, **kwargs)

    monkeypatch.setattr(translator, "translate_batch", slow)
    with TestClient(create_app(translator, ServeSettings(timeout_s=0.1))) as slow_client:
        body = checked(
            slow_client, "POST", "/v1/translate", 504, json={"source": ADD, "target": "body"}
        )
    assert "cancelled" in body["detail"]


def test_concurrent_clients_are_batched_over_http(translator):
    app = create_app(translator, ServeSettings(batch_wait_ms=50))
    sources = [ADD.replace("add", f"add{i}") for i in range(6)]

    async def send_all(url: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            responses = await asyncio.gather(
                *(
                    http.post("/v1/translate", json={"source": s, "target": "docstring", **FAST})
                    for s in sources
                )
            )
        return [r.json() for r in responses]

    with running_server(app) as url:
        results = asyncio.run(send_all(url))
    assert max(r["timing"]["batch_size"] for r in results) > 1
    settings = GenerationSettings(num_beams=1, max_new_tokens=12)
    # Batched or not, each request gets its own method's translation.
    assert [r["text"] for r in results] == [
        t.text for t in translator.translate_batch(sources, "docstring", settings=settings)
    ]


def test_running_server_stops(translator):
    before = threading.active_count()
    with running_server(create_app(translator)) as url:
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert threading.active_count() <= before


@pytest.mark.parametrize("field", ["temperature", "top_p", "length_penalty", "name_weight"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_get_422_and_the_connection_stays_usable(client, field, literal):
    source = json.dumps({"source": ADD, "target": "docstring"})
    body = source[:-1] + f', "{field}": {literal}}}'
    response = client.post(
        "/v1/translate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("field", "value"), [("temperature", 1e9), ("length_penalty", -1e6)])
def test_extreme_settings_are_refused(client, field, value):
    body = {"source": ADD, "target": "docstring", **FAST, field: value}
    assert client.post("/v1/translate", json=body).status_code == 422


# ------------------------------------------------------------------ who may call


def test_requests_naming_another_host_are_refused(translator):
    """DNS rebinding: a page of attacker.example makes its name resolve to 127.0.0.1 and
    posts to the server; the browser sends Host: attacker.example."""
    with running_server(create_app(translator)) as url:
        port = url.rsplit(":", 1)[1]
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example"):
            response = httpx.post(
                f"{url}/v1/translate",
                json={"source": ADD, "target": "docstring", **FAST},
                headers={"Host": host},
            )
            assert response.status_code == 400, host
            assert "--allow-host" in response.json()["detail"]
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "LocalHost"):
            response = httpx.get(f"{url}/health", headers={"Host": host})
            assert response.status_code == 200, host


def test_allowed_hosts_are_answered(translator):
    with running_server(create_app(translator), allow_hosts=["codemt.internal"]) as url:
        for host in ("codemt.internal", "codemt.internal:443", "CODEMT.internal"):
            assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200
        assert httpx.get(f"{url}/health", headers={"Host": "other.internal"}).status_code == 400


def test_host_names():
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == host_name("::1") == "[::1]"
    assert host_name("127.0.0.1:") == "127.0.0.1"
    for bad in ("http://localhost", "a b", "", "[::1", "user@host"):
        with pytest.raises(ValueError, match="not a host name"):
            host_name(bad)
    check = HostCheck(None, "0.0.0.0", allow=["proxy.example"])
    assert check.refusal(["192.168.1.5:8000"], ("192.168.1.5", 8000)) is None  # by address
    assert check.refusal(["localhost"], ("192.168.1.5", 8000)) is not None  # not loopback
    assert check.refusal([], ("127.0.0.1", 8000)) == "send one Host header"
    assert check.refusal(["localhost", "localhost"], ("127.0.0.1", 8000)) is not None


def test_serve_command_checks_hosts(tiny_model, monkeypatch, capsys):
    import uvicorn

    from codemt.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    command = ["serve", "--model", str(tiny_model), "--backend", "torch", "--threads", "1"]
    assert main([*command, "--allow-host", "proxy.example", "--allow-host", "b.example"]) == 0
    assert isinstance(served["app"], HostCheck)
    assert served["app"].names == {"127.0.0.1", "proxy.example", "b.example"}
    assert main([*command, "--allow-host", "https://proxy.example"]) == 2
    assert "not a host name" in capsys.readouterr().err


STALE = '''def join(base: str, name, sep="/") -> str:
    """Join two parts.

    Args:
        base (int): The base.
        other: Gone.
    """
    return base + sep + name


def unreadable(a):
    """Do.

    Args:
        this is prose, not an entry
    """
    print(a)
'''


def test_lint_reports_each_finding_without_a_model(client):
    body = checked(client, "POST", "/v1/lint", 200, json={"text": STALE})
    assert [(f["line"], f["function"], f["code"]) for f in body["findings"]] == [
        (1, "join", "DS101"),
        (1, "join", "DS101"),
        (1, "join", "DS102"),
        (1, "join", "DS104"),
        (1, "join", "DS201"),
        (11, "unreadable", "DS900"),
    ]
    only = checked(client, "POST", "/v1/lint", 200, json={"text": STALE, "select": ["DS9"]})
    assert [f["code"] for f in only["findings"]] == ["DS900"]
    assert (
        "line 1" in checked(client, "POST", "/v1/lint", 400, json={"text": "def f(:\n"})["detail"]
    )
    bad = checked(client, "POST", "/v1/lint", 400, json={"text": STALE, "ignore": ["XX"]})
    assert "XX" in bad["detail"]


def test_update_brings_one_docstring_in_line_and_says_what_it_fixed(client):
    request = {"text": STALE, "function": "join", "describe": False, **FAST}
    body = checked(client, "POST", "/v1/update", 200, json=request)
    assert body["function"] == "join" and body["line"] == 1
    assert {f["code"] for f in body["fixed"]} == {"DS101", "DS102", "DS104", "DS201"}
    assert body["text"] == STALE.replace(
        "        base (int): The base.\n        other: Gone.\n",
        "        base (str): The base.\n        name: Gone.\n        sep:\n\n"
        "    Returns:\n        str\n",
    )
    lines = STALE.splitlines(keepends=True)
    start, end = body["edit"]["range"]["start"], body["edit"]["range"]["end"]
    offset = [sum(len(line) for line in lines[: p["line"]]) + p["character"] for p in (start, end)]
    assert STALE[: offset[0]] + body["edit"]["new_text"] + STALE[offset[1] :] == body["text"]
    described = checked(client, "POST", "/v1/update", 200, json={**request, "describe": True})
    assert ast.parse(described["text"])  # the model's descriptions, whatever they are


def test_update_refusals(client):
    def refused(status: int, **request) -> str:
        return checked(client, "POST", "/v1/update", status, json={**FAST, **request})["detail"]

    in_step = 'def f(a):\n    """Do.\n\n    Args:\n        a: A.\n    """\n    print(a)\n'
    assert "needs no update" in refused(409, text=in_step, line=1)
    assert "is no parameters entry" in refused(409, text=STALE, function="unreadable")
    assert "line, its name" in refused(400, text=STALE)
