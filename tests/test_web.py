"""The web server through a real aiohttp server and client: page, SSE protocol, rulebook words,
malformed bodies, size cap, queue full, disconnects, concurrency with real models, security."""

from __future__ import annotations

import asyncio
import html as html_lib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from conftest import FIXTURES, cli_command, cli_env
from nanochat_core.chat import SamplingParams
from nanochat_core.serving import Worker, WorkerPool
from nanochat_tui.config import WebConfig
from nanochat_tui.web import create_app
from nanochat_tui.web.assets import static_dir, templates_dir, web_dir
from web_fakes import FakeModel, fake_info, until

GEN = "gen5-smear-backout"
USER = [{"role": "user", "content": "hello"}]


async def read_sse(resp) -> list[dict]:
    """Every `data:` payload of an SSE response, checking the framing on the way."""
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    raw = await resp.read()
    events = []
    for block in raw.decode("utf-8").split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        events.append(json.loads(block[len("data: "):]))
    assert raw.endswith(b"\n\n")
    return events


def tokens(events) -> str:
    return "".join(e["token"] for e in events if "token" in e)


@pytest.fixture
def make_client(aiohttp_client):
    async def make(*backends, config: WebConfig | None = None, pool: WorkerPool | None = None, **changes):
        config = replace(config or WebConfig(), **changes)
        app = create_app(config, list(backends) or None, pool=pool)
        return await aiohttp_client(app)
    return make


# ---------------------------------------------------------------- page and static files


async def test_page_has_the_controls_security_headers_and_no_inline_script(make_client):
    client = await make_client(FakeModel(info=fake_info(model_tag='<script>alert("x")</script>')))
    resp = await client.get("/")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    html = await resp.text()
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "require-trusted-types-for 'script'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # Every script is an external same-origin file; no inline handlers; nothing from a CDN.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    code = [(attrs, body) for attrs, body in scripts if 'type="application/json"' not in attrs]
    data = [body for attrs, body in scripts if 'type="application/json"' in attrs]
    assert code and all('src="/static/' in attrs and body.strip() == "" for attrs, body in code)
    # the one data block (page_config) is inert JSON that cannot close its element
    assert len(data) == 1 and "<" not in data[0] and json.loads(html_lib.unescape(data[0]))
    assert not re.search(r"\son[a-z]+\s*=", html) and "style=" not in html
    assert "http://" not in html and "https://" not in html
    assert 'placeholder="Ask anything"' in html
    assert 'aria-label="New Conversation"' in html and 'aria-label="Send"' in html
    # Chromium keeps Ctrl+Shift+N (incognito): the shortcut that works is listed first.
    assert re.search(r'title="New Conversation \([^"]*Ctrl\+Shift\+O[^"]*Ctrl\+Shift\+N', html)
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


async def test_static_files_are_served_with_types_and_nosniff(make_client):
    client = await make_client(FakeModel())
    html = await (await client.get("/")).text()
    for path, kind in [("/static/app.js", "javascript"), ("/static/style.css", "text/css"),
                       ("/static/logo.svg", "image/svg+xml"), ("/favicon.ico", "image/svg+xml")]:
        resp = await client.get(path)
        assert resp.status == 200 and kind in resp.headers["Content-Type"], path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await client.get(url)).status == 200, url
    assert (await client.get("/static/../app.js")).status in (403, 404)
    assert (await client.get("/static/..%2F..%2Fpyproject.toml")).status in (403, 404)
    assert (await client.get("/static/")).status in (403, 404)


def test_web_files_are_found_and_web_is_not_a_package():
    assert web_dir().name in ("web", "_web")
    assert (templates_dir() / "index.html").is_file() and (static_dir() / "app.js").is_file()
    assert not (web_dir() / "__init__.py").exists()


async def test_page_javascript_never_uses_html_sinks():
    js = (static_dir() / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


# ---------------------------------------------------------------- health and stats


async def test_health_and_stats(make_client):
    client = await make_client(FakeModel(), FakeModel())
    health = await (await client.get("/health")).json()
    assert health == {"status": "ok", "ready": True, "num_gpus": 2, "available_workers": 2}
    stats = await (await client.get("/stats")).json()
    assert stats["total_workers"] == 2 and stats["available_workers"] == 2 and stats["busy_workers"] == 0
    assert [{k: w[k] for k in ("gpu_id", "device")} for w in stats["workers"]] == [
        {"gpu_id": 0, "device": "cpu"}, {"gpu_id": 1, "device": "cpu"}]


# ---------------------------------------------------------------- the SSE protocol


async def test_sse_stream_is_nanochats_protocol_byte_for_byte(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "Hi 👋 there"))
    resp = await client.post("/chat/completions", json={"messages": USER})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    body = (await resp.read()).decode("utf-8")
    chunks = body.split("\n\n")
    assert chunks[:3] == ['data: {"token": "Hi", "gpu": 0}', 'data: {"token": " 👋", "gpu": 0}',
                          'data: {"token": " there", "gpu": 0}']
    assert json.loads(chunks[3][6:])["finish"] == "stop"  # extra event: no token/done key
    assert chunks[4:] == ['data: {"done": true}', ""]


async def test_sampling_reaches_the_engine_and_defaults_come_from_the_config(make_client):
    fake = FakeModel()
    client = await make_client(fake, sampling=SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None))
    await read_sse(await client.post("/chat/completions", json={"messages": USER}))
    await read_sse(await client.post("/chat/completions", json={
        "messages": USER, "temperature": 0, "top_k": 7.0, "max_tokens": 3, "seed": 5}))
    await read_sse(await client.post("/chat/completions", json={
        "messages": USER, "temperature": None, "top_k": None, "max_tokens": None}))
    got = [s for _, s in fake.calls]
    assert got[0] == SamplingParams(0.8, 50, 512, None)
    assert got[1] == SamplingParams(0.0, 7, 3, 5)
    assert got[2] == got[0]


async def test_max_tokens_and_tool_events_and_multi_turn_parts(make_client):
    fake = FakeModel(reply=lambda m, s: "one two three four", tool=("6*7", "42"))
    client = await make_client(fake)
    events = await read_sse(await client.post("/chat/completions", json={"messages": USER, "max_tokens": 2}))
    assert events[0] == {"tool_call": {"expression": "6*7"}, "gpu": 0}
    assert events[1] == {"tool_result": {"expression": "6*7", "result": "42"}, "gpu": 0}
    assert tokens(events) == "one two"
    finish = events[-2]
    assert finish["finish"] == "length" and finish["stats"]["generated_tokens"] == 2
    assert finish["parts"][0] == {"type": "python", "text": "6*7"}
    assert events[-1] == {"done": True}
    # The parts go back as the assistant's content: the rulebook accepts them.
    again = [*USER, {"role": "assistant", "content": finish["parts"]}, {"role": "user", "content": "more"}]
    await read_sse(await client.post("/chat/completions", json={"messages": again}))
    assert fake.calls[-1][0][1].content[0] == {"type": "python", "text": "6*7"}


async def test_engine_error_is_an_error_event_then_done(make_client):
    client = await make_client(FakeModel(reply=lambda m, s: "a b c", error_after=1))
    events = await read_sse(await client.post("/chat/completions", json={"messages": USER}))
    assert tokens(events) == "a"
    assert events[-2:] == [{"error": "engine exploded", "gpu": 0}, {"done": True}]


async def test_system_message_from_the_config_is_prepended(make_client):
    fake = FakeModel()
    client = await make_client(fake, system="Be brief.")
    await read_sse(await client.post("/chat/completions", json={"messages": USER}))
    sent = fake.calls[0][0]
    assert [(m.role, m.text) for m in sent] == [("system", "Be brief."), ("user", "hello")]
    own = [{"role": "system", "content": "Mine."}, *USER]
    await read_sse(await client.post("/chat/completions", json={"messages": own}))
    assert [m.text for m in fake.calls[1][0]] == ["Mine.", "hello"]


# ---------------------------------------------------------------- the rulebook's words, over HTTP

LONG = "x" * 8001
RULEBOOK = [
    ({"messages": []}, "At least one message is required"),
    ({"messages": [{"role": "user", "content": "hi"}] * 501}, "Too many messages. Maximum 500 messages allowed per request"),
    ({"messages": [{"role": "user", "content": ""}]}, "Message 0 has empty content"),
    ({"messages": [{"role": "user", "content": LONG}]}, "Message 0 is too long. Maximum 8000 characters allowed per message"),
    ({"messages": [{"role": "user", "content": "y" * 7000}] * 5}, "Total conversation is too long. Maximum 32000 characters allowed"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "Message 0 has invalid role. Must be 'user', 'assistant', or 'system'"),
    ({"messages": USER, "temperature": 2.5}, "Temperature must be between 0.0 and 2.0"),
    ({"messages": USER, "temperature": -0.1}, "Temperature must be between 0.0 and 2.0"),
    ({"messages": USER, "top_k": 201}, "top_k must be between 0 and 200"),
    ({"messages": USER, "top_k": -1}, "top_k must be between 0 and 200"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens must be between 1 and 4096"),
    ({"messages": USER, "max_tokens": 4097}, "max_tokens must be between 1 and 4096"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "The last message must be from the user"),
    ({"messages": [USER[0], {"role": "system", "content": "s"}, USER[0]]},
     "Message 1 has role 'system', but a system message is only allowed as the first message"),
    ({"messages": [{"role": "system", "content": "s"}]}, "A system message must be followed by a user message"),
]


@pytest.mark.parametrize("body,detail", RULEBOOK, ids=[d for _, d in RULEBOOK])
async def test_every_rulebook_message_is_a_400_with_its_exact_words(make_client, body, detail):
    fake = FakeModel()
    client = await make_client(fake)
    resp = await client.post("/chat/completions", json=body)
    assert resp.status == 400
    assert await resp.json() == {"detail": detail}
    assert fake.calls == []  # rejected before any work


MALFORMED = [
    (b"", "Request body is empty"),
    (b"{not json", "Request body is not valid JSON"),
    (b"\xff\xfe{}", "Request body must be JSON encoded as UTF-8"),
    (b"[1, 2]", "Request body must be a JSON object"),
    (b'"hello"', "Request body must be a JSON object"),
    (b"null", "Request body must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "Request body is not valid JSON"),
    (b"{}", "'messages' must be a list"),
    (b'{"messages": "hi"}', "'messages' must be a list"),
    (b'{"messages": {"role": "user"}}', "'messages' must be a list"),
    (b'{"messages": [42]}', "Message 0 must be an object"),
    (b'{"messages": [{"role": "user"}]}', "Message 0 must have 'role' and 'content'"),
    (b'{"messages": [{"content": "hi"}]}', "Message 0 must have 'role' and 'content'"),
    (b'{"messages": [{"role": 1, "content": "hi"}]}', "Message 0 has invalid role"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "Message 0 content must be a string"),
    (b'{"messages": [{"role": "user", "content": null}]}', "Message 0 has empty content"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}', "Message 0 content must be a string"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "Temperature must be a number"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": true}', "Temperature must be a number"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "Temperature must be a number"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', "Temperature must be a number"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_k": 2.5}', "top_k must be an integer"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}', "max_tokens must be an integer"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "seed": -1}', "seed must be between"),
]


@pytest.mark.parametrize("raw,start", MALFORMED, ids=[s for _, s in MALFORMED])
async def test_malformed_bodies_are_400_with_a_clear_detail_never_500(make_client, raw, start):
    client = await make_client(FakeModel())
    resp = await client.post("/chat/completions", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    detail = (await resp.json())["detail"]
    assert detail.startswith(start), detail
    assert "Traceback" not in detail and "\n" not in detail


async def test_bodies_over_the_cap_are_413(make_client):
    client = await make_client(FakeModel(), max_body_bytes=10_000)
    big = json.dumps({"messages": [{"role": "user", "content": "z" * 20_000}]}).encode()
    resp = await client.post("/chat/completions", data=big)
    assert resp.status == 413
    assert (await resp.json())["detail"] == "Request body is too large: at most 10000 bytes allowed"

    async def chunks():  # no Content-Length: the cap must hold while reading
        for _ in range(30):
            yield b"x" * 1000

    resp = await client.post("/chat/completions", data=chunks())
    assert resp.status == 413
    ok = await client.post("/chat/completions", json={"messages": USER})  # still serving
    assert tokens(await read_sse(ok)) == "You said: hello"


async def test_wrong_method_and_unknown_paths(make_client):
    client = await make_client(FakeModel())
    resp = await client.get("/chat/completions")
    assert resp.status == 405 and "detail" in await resp.json()
    assert (await client.get("/nope")).status == 404


# ---------------------------------------------------------------- load: queue, disconnects, latency


async def open_stream(client, text="hello", **extra):
    """POST and wait for the first token; returns the open response."""
    resp = await client.post("/chat/completions", json={"messages": [{"role": "user", "content": text}], **extra})
    assert resp.status == 200
    line = await resp.content.readuntil(b"\n\n")
    assert b'"token"' in line
    return resp


async def waiting_requests(client) -> int:
    return (await (await client.get("/stats")).json())["waiting_requests"]


async def queue_is_empty(client) -> bool:
    return await waiting_requests(client) == 0


async def available_workers(client) -> int:
    return (await (await client.get("/health")).json())["available_workers"]


async def test_queue_full_is_503_with_retry_after(make_client):
    fake = FakeModel(reply=lambda m, s: "t " * 400, token_delay=0.02)
    client = await make_client(fake, queue_size=1)
    running = await open_stream(client)
    queued = asyncio.ensure_future(client.post("/chat/completions", json={"messages": USER, "max_tokens": 5}))
    await until(lambda: waiting_requests(client), "the second request to wait in the queue")
    refused = await client.post("/chat/completions", json={"messages": USER})
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "busy" in (await refused.json())["detail"]
    running.close()
    waited = await queued
    events = await read_sse(waited)  # the queued request is served once the worker frees up
    assert tokens(events).startswith("t t") and events[-1] == {"done": True}


async def test_client_disconnect_cancels_within_a_step_and_frees_the_worker(make_client):
    gate = threading.Event()  # after its first token the engine makes no step until it opens
    fake = FakeModel(reply=lambda m, s: "tok " * 1000, gate=gate)
    client = await make_client(fake)
    resp = await open_stream(client)  # the first token; generation holds at its next step
    assert await available_workers(client) == 0
    before = fake.produced
    resp.close()  # the tab is closed
    await until(lambda: fake.cancelled == 1, "the generation to be cancelled")
    assert fake.produced - before <= 1  # at most the step that was already under way
    gate.set()
    await until(lambda: available_workers(client), "the worker to be free again")
    stats = await (await client.get("/stats")).json()
    assert stats["active_requests"] == 0 and stats["waiting_requests"] == 0
    assert tokens(await read_sse(await client.post("/chat/completions", json={"messages": USER, "max_tokens": 3}))) == "tok tok tok"


async def test_disconnect_while_queued_leaves_the_queue_without_running(make_client):
    fake = FakeModel(reply=lambda m, s: f"{m[-1].text} " * 300, token_delay=0.02)
    client = await make_client(fake, queue_size=4)
    running = await open_stream(client, "first")
    waiting = asyncio.ensure_future(client.post("/chat/completions", json={"messages": [{"role": "user", "content": "second"}]}))
    await until(lambda: waiting_requests(client), "the second request to wait in the queue")
    queued = await waiting  # headers arrive at once; the reply waits for a worker
    assert queued.status == 200
    queued.close()  # the client gives up while queued
    await until(lambda: queue_is_empty(client), "the queue to empty")
    running.close()
    # Once the first request has ended and the worker is free, nothing else can start: the
    # second left the queue, so it never reaches the engine.
    await until(lambda: fake.cancelled + fake.completed == 1, "the first request to end")
    await until(lambda: available_workers(client), "the worker to be free")
    assert (await (await client.get("/stats")).json())["active_requests"] == 0
    assert [m[-1].text for m, _ in fake.calls] == ["first"]


async def test_health_and_page_answer_while_every_worker_is_held_mid_reply(make_client):
    gate = threading.Event()
    fakes = [FakeModel(reply=lambda m, s: "b " * 500, gate=gate) for _ in range(2)]
    client = await make_client(*fakes)
    streams = [await open_stream(client), await open_stream(client)]  # both hold after a token
    assert await available_workers(client) == 0
    produced = [f.produced for f in fakes]
    for path in ["/health", "/", "/stats"] * 5:
        assert (await client.get(path)).status == 200
    # Every answer came while no engine made a step: none of them waited for generation.
    assert [f.produced for f in fakes] == produced and all(f.running == 1 for f in fakes)
    gate.set()
    for s in streams:
        s.close()


async def test_cors_same_origin_by_default(make_client):
    client = await make_client(FakeModel())
    host = f"http://{client.server.host}:{client.server.port}"
    evil = await client.post("/chat/completions", json={"messages": USER}, headers={"Origin": "http://evil.example"})
    assert evil.status == 403 and "Access-Control-Allow-Origin" not in evil.headers
    assert "--cors-origin" in (await evil.json())["detail"]
    pre = await client.options("/chat/completions", headers={"Origin": "http://evil.example",
                                                             "Access-Control-Request-Method": "POST"})
    assert pre.status == 403 and "Access-Control-Allow-Origin" not in pre.headers
    same = await client.post("/chat/completions", json={"messages": USER}, headers={"Origin": host})
    assert tokens(await read_sse(same)) == "You said: hello"
    assert "Access-Control-Allow-Origin" not in same.headers


async def test_cors_origin_allows_exactly_that_origin(make_client):
    client = await make_client(FakeModel(), cors_origin="https://app.example")
    pre = await client.options("/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    ok = await client.post("/chat/completions", json={"messages": USER}, headers={"Origin": "https://app.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    await read_sse(ok)
    other = await client.post("/chat/completions", json={"messages": USER}, headers={"Origin": "https://other.example"})
    assert other.status == 403


async def test_api_key_is_required_on_the_api_only(make_client):
    client = await make_client(FakeModel(), api_key="s3cret")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"}):
        resp = await client.post("/chat/completions", json={"messages": USER}, headers=headers)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in (await resp.json())["detail"]
    assert (await client.get("/stats")).status == 401
    good = {"Authorization": "Bearer s3cret"}
    assert tokens(await read_sse(await client.post("/chat/completions", json={"messages": USER}, headers=good))) == "You said: hello"
    assert (await client.get("/stats", headers=good)).status == 200
    assert (await client.get("/health")).status == 200 and (await client.get("/")).status == 200
    assert 'data-api-key-required="true"' in await (await client.get("/")).text()


async def test_conversations_are_not_logged_unless_asked(make_client, caplog):
    caplog.set_level(logging.INFO, logger="nanochat_tui.web")
    client = await make_client(FakeModel())
    await read_sse(await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "my secret plan"}]}))
    assert "secret" not in caplog.text and "chat request" in caplog.text
    caplog.clear()
    client = await make_client(FakeModel(), log_conversations=True)
    await read_sse(await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "my secret plan"}]}))
    assert "[USER]: my secret plan" in caplog.text
    assert "[ASSISTANT] (GPU 0): You said: my secret plan" in caplog.text


async def test_settings_endpoint_parses_with_the_rulebook(make_client):
    client = await make_client(FakeModel())
    ok = await client.post("/settings", json={"temperature": "0.3", "top_k": "40", "max_tokens": "64"})
    assert await ok.json() == {"temperature": 0.3, "top_k": 40, "max_tokens": 64}
    for body, detail in [({"temperature": "5"}, "Temperature must be between 0.0 and 2.0"),
                         ({"temperature": "warm"}, "Temperature must be a number, not 'warm'"),
                         ({"top_k": "abc"}, "top_k must be an integer, not 'abc'"),
                         ({"top_k": "999"}, "top_k must be between 0 and 200")]:
        resp = await client.post("/settings", json=body)
        assert resp.status == 400 and await resp.json() == {"detail": detail}


# ---------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def two_models():
    """Two separately loaded copies of a fixture checkpoint (one ChatModel per worker)."""
    from nanochat_core import load_chat_model

    return [load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu") for _ in range(2)]


PROMPTS = ["hello", "What is 12 times 7?", "tell me about vim", "x", "Why keep a cache of keys?", "ok",
           "a longer question about how windows and caches interact in attention layers", "edit",
           "héllo wörld ✨", "2+2", "the quick brown fox", "yes", "no", "why", "<b>bold</b>", "last one"]


def body_for(i: int) -> dict:
    messages = [{"role": "user", "content": PROMPTS[i]}]
    if i % 5 == 4:  # some multi-turn conversations too
        messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}, *messages]
    return {"messages": messages, "temperature": 0, "max_tokens": 24}


async def solo_runs(client) -> list[str]:
    solo = [tokens(await read_sse(await client.post("/chat/completions", json=body_for(i)))) for i in range(16)]
    assert sum(bool(s) for s in solo) >= 12  # random weights, but real text comes out
    return solo


async def sixteen_concurrent_equal_solo(client, solo: list[str]):
    responses = await asyncio.gather(*(client.post("/chat/completions", json=body_for(i)) for i in range(16)))
    together = await asyncio.gather(*(read_sse(r) for r in responses))
    for i, events in enumerate(together):
        assert tokens(events) == solo[i], f"stream {i} differs from its solo run"
        assert events[-1] == {"done": True}
    return together


async def test_sixteen_concurrent_greedy_streams_equal_their_solo_runs_two_workers(make_client, two_models):
    client = await make_client(*two_models, queue_size=16)
    together = await sixteen_concurrent_equal_solo(client, await solo_runs(client))
    gpus = {e["gpu"] for events in together for e in events if "gpu" in e}
    assert gpus == {0, 1}  # both workers served


async def test_sixteen_concurrent_greedy_streams_equal_their_solo_runs_batched(make_client):
    from nanochat_core import load_chat_model

    batched = load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu").batched(max_batch=8)
    try:
        pool = WorkerPool([Worker(0, "cpu", batched, slots=8)], queue_size=16)
        client = await make_client(pool=pool)
        solo = await solo_runs(client)
        steps_before = batched.engine.steps
        together = await sixteen_concurrent_equal_solo(client, solo)
        generated = sum(e["stats"]["generated_tokens"] for events in together for e in events if "stats" in e)
        assert batched.engine.steps - steps_before < generated  # decode steps really were shared
        # /health answers while the engine is busy with a batch.
        responses = await asyncio.gather(*(client.post("/chat/completions", json=body_for(i)) for i in range(8)))
        assert (await client.get("/health")).status == 200
        await asyncio.gather(*(read_sse(r) for r in responses))
    finally:
        batched.close()


async def test_real_model_disconnect_frees_the_worker_and_leaves_no_trace(make_client, two_models):
    model = two_models[0]
    client = await make_client(model)
    body = {"messages": [{"role": "user", "content": "tell me about vim"}], "temperature": 0, "max_tokens": 200}
    reference = await read_sse(await client.post("/chat/completions", json=body))
    resp = await client.post("/chat/completions", json=body)
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await until(lambda: available_workers(client), "the worker to be free after the disconnect")
    again = await read_sse(await client.post("/chat/completions", json=body))
    assert tokens(again) == tokens(reference)


# ---------------------------------------------------------------- the command


def test_more_workers_than_devices_is_a_one_line_error(capsys):
    from nanochat_tui.cli import main

    assert main(["--web", "-n", "2", "--device-type", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nanochat-tui: error: --num-gpus 2 needs CUDA")
    import torch

    if not torch.cuda.is_available():
        assert main(["--web", "--device-type", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "CUDA is not available" in err
    else:
        n = torch.cuda.device_count() + 1
        assert main(["--web", "-n", str(n), "--device-type", "cuda"]) == 2


def test_nanochat_tui_web_starts_prints_urls_serves_and_stops(tmp_path):
    proc = subprocess.Popen(
        [*cli_command(), "--web", "-p", "0", "--host", "0.0.0.0", "--model-dir", str(FIXTURES / GEN / "base_dir"),
         "--device-type", "cpu", "-t", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env=cli_env(NANOCHAT_TUI_API_KEY="k-from-env"),  # the key need not sit in `ps`
    )
    lines: list[str] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl+C"):
                break
        out = "\n".join(lines)
        assert "Initializing worker pool with 1 GPUs..." in out
        assert "Loading model on cpu..." in out and "All 1 workers initialized!" in out
        assert "Warning: listening on 0.0.0.0" in out and "reachable from the network" in out
        assert "GET  /health" in out and "GET  /stats" in out and "POST /chat/completions" in out
        assert "Conversation logging: off" in out and "API key: required" in out
        assert "Host names answered: localhost" in out and "any IP address" in out
        assert "k-from-env" not in out
        url = re.search(r"http://localhost:(\d+)", out)
        assert url, out
        base = f"http://127.0.0.1:{url.group(1)}"
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        assert health["ready"] is True and health["num_gpus"] == 1
        data = json.dumps({"messages": USER, "max_tokens": 5}).encode()
        for headers, status in (({}, 401), ({"Authorization": "Bearer k-from-env", "Host": "evil.example"}, 403)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(base + "/chat/completions", data, headers), timeout=30)
            assert refused.value.code == status
        req = urllib.request.Request(base + "/chat/completions", method="POST", data=data,
                                     headers={"Authorization": "Bearer k-from-env"})
        body = urllib.request.urlopen(req, timeout=30).read().decode()
        assert body.endswith('data: {"done": true}\n\n') and '"gpu": 0' in body
        page = urllib.request.urlopen(base + "/", timeout=10)
        assert "Content-Security-Policy" in page.headers and page.headers["Server"] == "nanochat-tui"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, rest
    assert "Shutting down..." in rest and "Traceback" not in rest
    assert "hello" not in rest  # conversations are not logged by default


def test_bad_checkpoint_dir_is_a_one_line_error(tmp_path):
    done = subprocess.run([*cli_command(), "--web", "-p", "0", "--host", "127.0.0.1", "--model-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("nanochat-tui: error: ")
    assert "Traceback" not in done.stderr + done.stdout


def test_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run([*cli_command(), "--web", "-p", str(port), "--host", "127.0.0.1",
                               "--model-dir", str(FIXTURES / GEN / "base_dir")],
                              capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"nanochat-tui: error: cannot listen on 127.0.0.1:{port}: address already in use (pick another port with -p/--port)"
    assert "Traceback" not in done.stderr


def test_demo_model_serves(tmp_path):
    from nanochat_core import load_chat_model

    async def go():
        from aiohttp.test_utils import TestClient, TestServer

        model = load_chat_model(base_dir=None, progress=None)
        assert model.info.is_demo
        async with TestClient(TestServer(create_app(WebConfig(), [model]))) as client:
            resp = await client.post("/chat/completions", json={"messages": [{"role": "user", "content": "What can you do?"}],
                                                                "temperature": 0, "max_tokens": 40})
            events = await read_sse(resp)
            assert tokens(events).strip() and events[-1] == {"done": True}
            assert "demo model" in await (await client.get("/")).text()

    env_home = tmp_path / "home"
    os.environ["NANOCHAT_BASE_DIR"] = str(env_home)
    try:
        asyncio.run(go())
    finally:
        os.environ.pop("NANOCHAT_BASE_DIR", None)


async def test_page_carries_the_rulebook_and_the_command_registry(make_client):
    """The page gets limits, defaults and commands from the server as JSON (never retyped)."""
    import html as html_lib
    import re as re_lib

    from nanochat_core import chat
    from nanochat_tui.commands import page_commands

    client = await make_client(FakeModel())
    page = await (await client.get("/")).text()
    match = re_lib.search(r'<script type="application/json" id="nanochat-config">(.*?)</script>', page, re_lib.S)
    assert match is not None
    config = json.loads(html_lib.unescape(match.group(1)))
    assert config["limits"]["max_message_chars"] == chat.MAX_MESSAGE_CHARS
    assert config["limits"]["top_k"] == [chat.MIN_TOP_K, chat.MAX_TOP_K]
    assert config["defaults"]["max_tokens"] == 512 and config["commands"] == page_commands()
