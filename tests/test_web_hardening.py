"""The web server against hostile or careless clients, on loopback (docs/security.md "Web server"):
Host names (DNS rebinding), API keys (empty, from the environment, non-UTF-8 headers), slow
headers and bodies, log flooding, what the KV cache tells, refusals as 400, response headers.

Every test here failed before its fix. Waits are on conditions (web_fakes.until) with generous
deadlines; nothing asserts how long something took."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from dataclasses import replace

import pytest

from conftest import FIXTURES
from nanochat_core.chat import ValidationError
from nanochat_core.text import SafeLogFormatter
from nanochat_tui.cli import main
from nanochat_tui.config import WebConfig
from nanochat_tui.web import StartError, ThreadedServer, create_app
from nanochat_tui.web.hosts import HostPolicy, check_allowed_host, host_name, machine_names
from nanochat_tui.web.logs import RATE_LINES, RateLimit
from web_fakes import FakeModel, until

USER = [{"role": "user", "content": "hello"}]
GEN = "gen5-smear-backout"
LOCAL = WebConfig(host="127.0.0.1", port=0)


@pytest.fixture
def make_client(aiohttp_client):
    async def make(*backends, config: WebConfig | None = None, **changes):
        return await aiohttp_client(create_app(replace(config or WebConfig(), **changes), list(backends)))
    return make


async def raw_exchange(port: int, data: bytes, read_until_eof: bool = True) -> bytes:
    """Send bytes on a fresh loopback connection; return everything the server sent until it
    closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read() if read_until_eof else await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def headers_of(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


# ---------------------------------------------------------------- Host names (DNS rebinding)


async def test_a_host_name_the_server_does_not_answer_to_is_refused_everywhere(make_client):
    client = await make_client(FakeModel())
    # A rebinding page: its own name in Host, and its Origin equal to that Host ("same origin").
    evil = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
    for method, path in (("post", "/chat/completions"), ("post", "/v1/chat/completions"), ("get", "/stats"),
                         ("get", "/health"), ("get", "/"), ("get", "/static/app.js"), ("get", "/v1/models")):
        resp = await getattr(client, method)(path, json={"messages": USER}, headers=evil)
        assert resp.status == 403, (path, resp.status)
        text = await resp.text()
        assert "evil.example" in text and "--allowed-host" in text and "DNS rebinding" in text
        assert text.strip().count("\n") == 0 if not path.startswith(("/chat", "/v1", "/stats")) else True
    v1 = await (await client.get("/v1/models", headers=evil)).json()
    assert v1["error"]["type"] == "invalid_request_error"  # OpenAI's shape under /v1
    nano = await (await client.post("/chat/completions", json={"messages": USER}, headers=evil)).json()
    assert nano["detail"].startswith("Host 'evil.example:8000' is not a name this server answers to")


async def test_the_names_a_server_is_reached_by_are_answered(make_client):
    client = await make_client(FakeModel())
    names = ["localhost:8000", "LOCALHOST", "127.0.0.1:8000", "[::1]:8000", "192.168.1.20:8000",
             "chat.localhost:8000", *machine_names()]
    for host in names:
        resp = await client.post("/chat/completions", json={"messages": USER},
                                 headers={"Host": host, "Origin": f"http://{host}"})
        assert resp.status == 200, host
        await resp.read()


async def test_allowed_host_adds_names_suffixes_or_any(make_client):
    client = await make_client(FakeModel(), allowed_hosts=("chat.example.com", ".corp.example"))
    for host, status in (("chat.example.com", 200), ("chat.example.com:443", 200), ("corp.example", 200),
                         ("a.b.corp.example", 200), ("evilcorp.example", 403), ("example.com", 403)):
        assert (await client.get("/health", headers={"Host": host})).status == status, host
    anyone = await make_client(FakeModel(), allowed_hosts=("*",))
    assert (await anyone.get("/health", headers={"Host": "whatever.example"})).status == 200


def test_host_names_are_parsed_strictly():
    assert host_name("Example.COM.:80") == "example.com" and host_name("[::1]") == "::1"
    for bad in ("", "a b", "evil.example:80x", "[::1", "[evil]:80", "x/y", "ex ample.com", "::1"):
        assert host_name(bad) is None, bad
    policy = HostPolicy("0.0.0.0")
    assert policy.allows(None)  # not a browser: browsers always send Host
    assert not policy.allows("evil.example") and not policy.allows("localhost.evil.example")
    assert HostPolicy("myhost.lan").allows("myhost.lan:8000")  # --host NAME is answered
    assert check_allowed_host(" Chat.Example.com ") == "chat.example.com"
    for bad in ("", "http://chat.example.com/", "a b", "."):
        with pytest.raises(ValueError, match="--allowed-host needs a host name"):
            check_allowed_host(bad)


def test_a_bad_allowed_host_is_a_one_line_error_before_loading(capsys, monkeypatch):
    monkeypatch.setattr("nanochat_tui.web.server.load_workers", _must_not_load)
    assert main(["--web", "--allowed-host", "http://chat.example.com/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allowed-host needs a host name" in err


# ---------------------------------------------------------------- API keys


def _must_not_load(*args, **kwargs):
    raise AssertionError("models were loaded for a configuration that must not start")


@pytest.mark.parametrize("args, env, words", [
    (["--api-key", ""], None, "--api-key is empty"),
    (["--api-key", "   "], None, "--api-key is empty"),
    ([], "", "NANOCHAT_TUI_API_KEY is set but empty"),
    (["--api-key", " spaced "], None, "the API key has spaces at its ends or control characters"),
    (["--api-key", "tab\tkey"], None, "control characters"),
])
def test_empty_or_unsendable_keys_are_refused_at_start(capsys, monkeypatch, args, env, words):
    monkeypatch.setattr("nanochat_tui.web.server.load_workers", _must_not_load)
    if env is not None:
        monkeypatch.setenv("NANOCHAT_TUI_API_KEY", env)
    else:
        monkeypatch.delenv("NANOCHAT_TUI_API_KEY", raising=False)
    assert main(["--web", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nanochat-tui: error: ") and words in err, err


def test_the_key_can_come_from_the_environment_and_the_flag_wins(monkeypatch):
    seen: list[WebConfig] = []
    monkeypatch.setattr("nanochat_tui.web.run_web", lambda config: seen.append(config) or 0)
    monkeypatch.setenv("NANOCHAT_TUI_API_KEY", "from-env")
    assert main(["--web"]) == 0 and seen[-1].api_key == "from-env"
    assert main(["--web", "--api-key", "from-flag"]) == 0 and seen[-1].api_key == "from-flag"
    monkeypatch.delenv("NANOCHAT_TUI_API_KEY")
    assert main(["--web"]) == 0 and seen[-1].api_key is None
    assert main(["--web", "--allowed-host", "a.example", "--allowed-host", ".b.example"]) == 0
    assert seen[-1].allowed_hosts == ("a.example", ".b.example")


def test_create_app_refuses_an_empty_key():
    for key in ("", "  ", "k\n"):
        with pytest.raises(StartError):
            create_app(WebConfig(api_key=key), [FakeModel()])


async def test_a_bare_bearer_never_passes(make_client):
    client = await make_client(FakeModel(), api_key="s3cret")
    for header in ("Bearer", "bearer ", "Bearer  ", "s3cret", "Bearer s3cret extra"):
        resp = await client.get("/stats", headers={"Authorization": header})
        assert resp.status == 401, header


async def test_non_utf8_bytes_in_authorization_are_401_not_500(aiohttp_server):
    server = await aiohttp_server(create_app(WebConfig(api_key="s3cret"), [FakeModel()]))
    for token in (b"\xff\xfe", b"s3cret\xff", b"\xc3\x28"):
        raw = await raw_exchange(server.port, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                              b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 401, raw[:200]
        assert b"Missing or wrong API key" in raw and b"Traceback" not in raw
    ok = await raw_exchange(server.port, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         b"Authorization: Bearer s3cret\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 200
    # A key with non-ASCII characters works when the client sends it as UTF-8.
    server = await aiohttp_server(create_app(WebConfig(api_key="clé-ü"), [FakeModel()]))
    ok = await raw_exchange(server.port, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                                         + "clé-ü".encode() + b"\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 200


# ---------------------------------------------------------------- slow clients


async def trickle(writer: asyncio.StreamWriter, stop: asyncio.Event, piece: bytes) -> None:
    """Send `piece` every 50 ms until `stop` or the server closes the connection."""
    while not stop.is_set():
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.05)


async def test_slow_headers_are_cut_off_and_a_long_stream_is_not():
    gate = threading.Event()
    fake = FakeModel(reply=lambda m, s: "w " * 50, gate=gate)
    config = replace(LOCAL, header_timeout=0.5)
    with ThreadedServer(create_app(config, [fake]), config) as server:
        # A long reply is open (held mid-reply) while slowloris clients trickle header lines.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = json.dumps({"messages": USER}).encode()
        writer.write(b"POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await reader.readuntil(b'"token"')
        stop = asyncio.Event()
        slow = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
        for _, w in slow:  # one header value, a byte at a time: no size or count limit is hit
            w.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        tasks = [asyncio.create_task(trickle(w, stop, b"a")) for _, w in slow]
        try:
            closed = [asyncio.create_task(r.read()) for r, _ in slow]  # b"" (or a 4xx) at the close
            await until(lambda: all(t.done() for t in closed), "the server to close every slowloris connection")
            assert all(b"200 OK" not in t.result() for t in closed)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for _, w in slow:
                w.close()
        # The header timeout has passed many times over; the held stream is still open.
        gate.set()
        rest = await reader.readuntil(b'data: {"done": true}')
        assert b'"finish": "stop"' in rest  # the whole reply, not cut off
        writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes():
    fake = FakeModel()
    config = replace(LOCAL, body_timeout=0.5)
    with ThreadedServer(create_app(config, [fake]), config) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        stop = asyncio.Event()
        task = asyncio.create_task(trickle(writer, stop, b" "))
        try:
            answer = await asyncio.wait_for(reader.read(), timeout=30)  # a deadline, not a measurement
        finally:
            stop.set()
            await task
            writer.close()
        assert status_of(answer) == 408 and headers_of(answer).get("connection") == "close"
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["message"] == "Request body did not arrive within 0.5 seconds"
        assert fake.calls == []


# ---------------------------------------------------------------- logs


async def test_malformed_requests_give_one_short_line_each_and_are_rate_limited(caplog):
    caplog.set_level(logging.DEBUG)
    config = LOCAL
    with ThreadedServer(create_app(config, [FakeModel()]), config) as server:
        line = b"GET /" + b"A" * 10_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # over aiohttp's 8190
        bad_header = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon \x1b[2J here\r\n\r\n"
        answers = await asyncio.gather(*(raw_exchange(server.port, line if i % 2 else bad_header)
                                         for i in range(200)))
        assert all(status_of(a) == 400 for a in answers)
        ok = await raw_exchange(server.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status_of(ok) == 200
    formatter = SafeLogFormatter("%(asctime)s %(message)s")
    bad = [r for r in caplog.records if "bad request" in r.getMessage() or "Error handling" in r.getMessage()]
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert 1 <= len(bad) <= 3 * RATE_LINES, len(bad)  # not one per request: 200 were sent
    assert all(r.exc_info is None for r in bad)  # no tracebacks
    assert all("\n" not in formatter.format(r) and len(formatter.format(r)) < 600 for r in bad)
    assert "\x1b" not in text and "A" * 1000 not in text
    assert len(text.encode()) < 40_000, len(text.encode())  # aiohttp's own records: ~6.5 MB
    assert any("more such lines left out" in r.getMessage() for r in bad) or len(bad) <= RATE_LINES


def test_rate_limit_counts_what_it_leaves_out():
    now = [0.0]
    limit = RateLimit(lines=2, window=10.0, clock=lambda: now[0])
    assert [limit.take() for _ in range(4)] == [(True, 0), (True, 0), (False, 0), (False, 0)]
    now[0] = 10.0
    assert limit.take() == (True, 2) and limit.take() == (True, 0)


# ---------------------------------------------------------------- what the KV cache tells


@pytest.fixture(scope="module")
def real_model():
    from nanochat_core import load_chat_model

    return load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu")


SECRET = "my bank password is hunter2 and my pin is 4321, please remember it"
GUESS = "my bank password is hunter2 and my pin is 9"


async def probe(client) -> tuple[dict, dict]:
    """One client's secret prompt, then another's guess of its start: what does the guess learn?"""
    await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": SECRET}],
                                                    "max_tokens": 1, "temperature": 0})
    v1 = await (await client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": GUESS}], "max_tokens": 1, "temperature": 0})).json()
    await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": SECRET}],
                                                    "max_tokens": 1, "temperature": 0})
    raw = await (await client.post("/chat/completions", json={
        "messages": [{"role": "user", "content": GUESS}], "max_tokens": 1, "temperature": 0})).text()
    finish = next(json.loads(b[6:]) for b in raw.split("\n\n") if '"finish"' in b)
    return v1["usage"], finish["stats"]


async def test_cached_tokens_do_not_tell_one_client_about_another_clients_prompt(make_client, real_model):
    usage, stats = await probe(await make_client(real_model))
    assert "prompt_tokens_details" not in usage and "cached_tokens" not in stats
    assert usage["prompt_tokens"] > 10 and stats["prompt_tokens"] > 10
    # The probe is real: a server that reports the number does leak the shared prefix.
    usage, stats = await probe(await make_client(real_model, report_cached_tokens=True))
    assert usage["prompt_tokens_details"]["cached_tokens"] > 5 and stats["cached_tokens"] > 5


# ---------------------------------------------------------------- refusals are the client's error

TOO_LONG = "The conversation is 3000 tokens, more than this model's context of 2559 tokens; start a new conversation or shorten it"


async def test_a_conversation_the_engine_refuses_is_400_not_500(make_client):
    fake = FakeModel(raise_error=ValidationError(TOO_LONG))
    client = await make_client(fake)
    whole = await client.post("/v1/chat/completions", json={"messages": USER})
    assert whole.status == 400
    assert await whole.json() == {"error": {"message": TOO_LONG, "type": "invalid_request_error",
                                            "param": "messages", "code": None}}
    raw = await (await client.post("/v1/chat/completions", json={"messages": USER, "stream": True})).text()
    chunks = [json.loads(b[6:]) for b in raw.split("\n\n") if b.startswith("data: {")]
    assert chunks[-1] == {"error": {"message": TOO_LONG, "type": "invalid_request_error",
                                    "param": "messages", "code": None}}
    # A real engine failure stays a 500 server_error.
    broken = await make_client(FakeModel(raise_error=RuntimeError("CUDA error: device lost")))
    resp = await broken.post("/v1/chat/completions", json={"messages": USER})
    assert resp.status == 500 and (await resp.json())["error"]["type"] == "server_error"


async def test_a_real_conversation_longer_than_the_context_is_400(make_client, real_model):
    client = await make_client(real_model)
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 1500} for i in range(5)]
    resp = await client.post("/v1/chat/completions", json={"messages": long})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["param"] == "messages"


# ---------------------------------------------------------------- response headers


async def test_every_answer_has_the_security_headers_and_no_version_banner(make_client):
    client = await make_client(FakeModel(), cors_origin="https://app.example")
    for method, path in (("get", "/"), ("get", "/static/app.js"), ("get", "/health"), ("get", "/nope"),
                         ("post", "/chat/completions"), ("get", "/v1/models"), ("get", "/chat/completions")):
        resp = await getattr(client, method)(path, json={"messages": USER})
        await resp.read()
        h = resp.headers
        assert h["Server"] == "nanochat-tui", (path, h.get("Server"))
        assert not any("python" in v.lower() or "aiohttp" in v.lower() for v in h.values()), path
        assert h["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert h["Cross-Origin-Resource-Policy"] == "same-origin", path
        assert "camera=()" in h["Permissions-Policy"] and "microphone=()" in h["Permissions-Policy"], path
        assert h["X-Content-Type-Options"] == "nosniff" and "default-src 'none'" in h["Content-Security-Policy"]


async def test_answers_aiohttp_writes_itself_carry_no_version_either():
    with ThreadedServer(create_app(LOCAL, [FakeModel()]), LOCAL) as server:
        raw = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nbroken header\r\n\r\n")
    assert status_of(raw) == 400 and headers_of(raw)["server"] == "nanochat-tui"


async def test_cors_origin_covers_health_so_nanochats_page_sees_the_engine(make_client):
    client = await make_client(FakeModel(), cors_origin="https://app.example")
    resp = await client.get("/health", headers={"Origin": "https://app.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    pre = await client.options("/health", headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.get("/health", headers={"Origin": "https://other.example"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers  # public, unreadable
    plain = await make_client(FakeModel())
    resp = await plain.get("/health", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


# ---------------------------------------------------------------- the thread helper


def test_threaded_server_serves_reports_its_lines_and_a_busy_port(monkeypatch):
    import urllib.request

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = replace(LOCAL, port=port)
        with pytest.raises(StartError, match="address already in use"):
            ThreadedServer(create_app(busy, [FakeModel()]), busy).start()
    with ThreadedServer(create_app(LOCAL, [FakeModel()]), LOCAL) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert any(line.startswith("Press Ctrl+C") for line in server.lines)
        health = json.loads(urllib.request.urlopen(server.url + "/health", timeout=30).read())
        assert health["ready"] is True


async def test_the_context_budget_defaults_to_sequence_len_and_is_checked_before_queueing(make_client, real_model):
    """--max-context (hardening item 7): one request may not take more than the budget; the
    default is the model's sequence_len; a refusal is the rulebook's kind of 400 before any work."""
    from nanochat_tui.web.workers import context_budget, model_worker

    seq = real_model.info.sequence_len
    assert context_budget(WebConfig(), real_model) == seq
    assert context_budget(WebConfig(max_context=0), real_model) is None
    worker = model_worker(0, real_model, 2, context_budget(WebConfig(), real_model))
    assert worker.backend.context_limit == seq
    client = await make_client(worker)
    over = [{"role": "user", "content": "word " * (seq + 10)}]
    resp = await client.post("/chat/completions", json={"messages": over})
    assert resp.status == 400
    assert (await resp.json())["detail"].startswith(f"Total conversation is too long. Maximum {seq} tokens allowed")
    ok = await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert ok.status == 200 and b'"done": true' in await ok.read()
