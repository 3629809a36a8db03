"""Client mode (`--server`) bounds against a hostile OpenAI-compatible server on loopback.

Every cap and deadline of nanochat_core.remote_limits (docs/security.md, "Client mode (`--server`)
bounds") is met by a server that breaks it: a line that never ends, an event that never closes,
bodies of many megabytes, a reply far past max_tokens, a server that never answers, one that
trickles bytes, one that never finishes. Each must end with one line naming the bound (or, past
max_tokens, a reply cut as "length"), having read little: the tests assert on the bytes the
server managed to send and on the messages, never on wall time. Deadlines here are fractions of
a second, and every hostile answer is itself finite, so a client without the bounds fails the
test instead of hanging it.

Lone UTF-16 surrogates (from JSON escapes) in every string a server sends must never break the
`--web --server` streams: tested through the aiohttp app in-process with the remote backend.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading

import pytest
from conftest import cli_command, cli_env, wait_for
from hostile_server import (
    RAW,
    HostileServer,
    Pause,
    answer,
    endless,
    self_signed,
    sse_chunk,
    stream_of,
    text_chunk,
    trickle,
)

from nanochat_core.chat import SamplingParams
from nanochat_core.events import Done, ErrorEvent, TextDelta
from nanochat_core.remote import RemoteChatModel, RemoteError
from nanochat_core.remote_limits import ClientLimits, LimitsError, parse_server_timeout

USER = [{"role": "user", "content": "hi"}]
# Small caps and short deadlines, so each test reads little and ends fast.
SMALL = ClientLimits(first_s=5.0, idle_s=5.0, total_s=30.0, max_line_bytes=64 << 10,
                     max_event_bytes=256 << 10, max_body_bytes=256 << 10, max_error_bytes=4 << 10)
FLOOD = 64 << 20  # what each endless answer sends at most: far past every cap
BOUNDED = 16 << 20  # what a bounded client lets through: the cap plus loopback socket buffers


def collect(events) -> tuple[str, list]:
    events = list(events)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def hung_up(srv: HostileServer) -> bool:
    """The server's answer ended because the client closed the connection."""
    return wait_for(srv.closed_early.is_set, "the server to see the client hang up", timeout=10)


def ticking(seconds: float, n: int = 200):
    """A complete text event every `seconds`, `n` times: never idle, never finished."""
    for _ in range(n):
        yield text_chunk("tick ")
        yield Pause(seconds)


# ---------------------------------------------------------------------------------------- caps


def test_an_unterminated_line_ends_at_the_line_cap():
    srv = HostileServer(chat=answer(200, itertools.chain([b"data: "], endless(b"x" * 65536, FLOOD))))
    with srv as url:
        _, events = collect(RemoteChatModel(url, limits=SMALL).chat(USER))
        assert events == [ErrorEvent(f"{url} sent a stream line longer than 64 KiB; the reply was cut off "
                                     "(client-mode cap on one line)")]
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_data_lines_without_a_blank_line_end_at_the_event_cap():
    srv = HostileServer(chat=answer(200, endless(b"data: " + b"y" * 1000 + b"\n", FLOOD)))
    with srv as url:
        _, events = collect(RemoteChatModel(url, limits=SMALL).chat(USER))
        assert events == [ErrorEvent(f"{url} sent a stream event larger than 256 KiB without ending it; "
                                     "the reply was cut off (client-mode cap on one event)")]
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_a_huge_models_body_is_one_line_at_connect():
    srv = HostileServer(models_answer=(200, itertools.chain([b'{"data": ['], endless(b'{"id": "m"},' * 4096, FLOOD))))
    with srv as url:
        with pytest.raises(RemoteError) as err:
            RemoteChatModel(url, limits=SMALL)
        assert str(err.value) == f"{url}/models sent more than 256 KiB; not read (client-mode cap on response bodies)"
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_huge_error_bodies_are_cut_at_the_error_cap():
    huge = [b'{"error": {"message": "', *endless(b"z" * 65536, FLOOD)]
    srv = HostileServer(models_answer=(500, iter(huge)), chat=answer(500, iter(huge), "application/json"))
    with srv as url:
        with pytest.raises(RemoteError) as err:
            RemoteChatModel(url, limits=SMALL)
        assert str(err.value) == f"{url}/models answered HTTP 500: (an error body over 4 KiB, not read: client-mode cap)"
        assert hung_up(srv) and srv.bytes_sent < BOUNDED
        srv.closed_early.clear()
        _, events = collect(RemoteChatModel(url, model="m", check=False, limits=SMALL).chat(USER))
        assert events == [ErrorEvent(f"{url} answered HTTP 500: (an error body over 4 KiB, not read: client-mode cap)")]
        assert hung_up(srv) and srv.bytes_sent < 2 * BOUNDED


def test_a_huge_non_streamed_reply_is_one_error():
    body = itertools.chain([b'{"choices": [{"message": {"content": "'], endless(b"w" * 65536, FLOOD))
    srv = HostileServer(chat=answer(200, body, "application/json"))
    with srv as url:
        _, events = collect(RemoteChatModel(url, limits=SMALL).chat(USER))
        assert events == [ErrorEvent(f"{url} sent a reply larger than 256 KiB; not read (client-mode cap on response bodies)")]
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_a_reply_past_max_tokens_is_cut_as_length():
    limits = ClientLimits()
    srv = HostileServer(chat=answer(200, endless(text_chunk("a" * 99 + " "), FLOOD)))
    with srv as url:
        m = RemoteChatModel(url, limits=limits)
        text, events = collect(m.chat(USER, SamplingParams(max_tokens=8)))
        assert len(text) == limits.reply_chars(8) == 8 * 32 + 1024
        done = events[-1]
        assert isinstance(done, Done) and done.reason == "length" and done.text == text
        assert m.notices[-1] == (f"{url} kept sending past max_tokens=8: stopped reading after 1280 characters "
                                 "(client-mode cap: 32 characters or 4 events per token; docs/security.md)")
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_endless_events_without_text_are_cut_as_length():
    empty = sse_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": None}]})
    srv = HostileServer(chat=answer(200, endless(empty, FLOOD)))
    with srv as url:
        m = RemoteChatModel(url)
        text, events = collect(m.chat(USER, SamplingParams(max_tokens=8)))
        assert text == "" and isinstance(events[-1], Done) and events[-1].reason == "length"
        assert "stopped reading after 96 events" in m.notices[-1]
        assert hung_up(srv) and srv.bytes_sent < BOUNDED


def test_a_non_streamed_reply_past_max_tokens_is_cut_too():
    reply = json.dumps({"choices": [{"message": {"content": "b" * 100_000}, "finish_reason": "stop"}]}).encode()
    with HostileServer(chat=answer(200, [reply], "application/json")) as url:
        m = RemoteChatModel(url)
        text, events = collect(m.chat(USER, SamplingParams(max_tokens=8)))
        assert len(text) == 1280 and events[-1].reason == "length"


# ----------------------------------------------------------------------------------- deadlines


def test_a_server_that_never_answers_meets_the_first_deadline():
    limits = ClientLimits(first_s=0.3)
    with HostileServer(chat=answer(RAW, [Pause(5)])) as url:
        m = RemoteChatModel(url, limits=limits)
        _, events = collect(m.chat(USER))
    assert events == [ErrorEvent(f"no answer from {url} within 0.3 s (the 'first' deadline; "
                                 "raise it with --server-timeout first=SECONDS)")]


def test_trickled_headers_meet_the_first_deadline():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Padding: " + b"p" * 100 + b"\r\n\r\n"
    with HostileServer(chat=answer(RAW, trickle(head, 0.02))) as url:
        _, events = collect(RemoteChatModel(url, limits=ClientLimits(first_s=0.5)).chat(USER))
    assert len(events) == 1 and "within 0.5 s (the 'first' deadline" in events[0].message


def test_a_trickled_models_answer_meets_the_first_deadline():
    listing = json.dumps({"data": [{"id": f"model-{i}"} for i in range(20)]}).encode()
    with HostileServer(models_answer=(200, trickle(listing, 0.01))) as url, pytest.raises(RemoteError) as err:
        RemoteChatModel(url, limits=ClientLimits(first_s=0.5))
    assert str(err.value) == (f"no answer from {url}/models within 0.5 s (the 'first' deadline; "
                              "raise it with --server-timeout first=SECONDS)")


def test_bytes_trickled_mid_reply_do_not_reset_the_idle_deadline():
    chunks = [text_chunk("Hi"), *trickle(text_chunk(" there") * 3, 0.02)]
    with HostileServer(chat=answer(200, chunks)) as url:
        text, events = collect(RemoteChatModel(url, limits=ClientLimits(idle_s=0.5)).chat(USER))
    assert text == "Hi"
    assert events[-1] == ErrorEvent(f"{url} sent no complete event for 0.5 s; the reply was cut off "
                                    "(the 'idle' deadline; raise it with --server-timeout idle=SECONDS)")


def test_a_reply_that_never_finishes_meets_the_total_deadline():
    with HostileServer(chat=answer(200, ticking(0.05))) as url:
        m = RemoteChatModel(url, limits=ClientLimits(idle_s=5, total_s=1.0))
        text, events = collect(m.chat(USER, SamplingParams(max_tokens=4096)))
    assert text.startswith("tick tick ")
    assert events[-1] == ErrorEvent(f"{url} did not finish within 1 s (the 'total' deadline; "
                                    "raise it with --server-timeout total=SECONDS)")


def test_a_stalled_tls_handshake_meets_the_first_deadline():
    """The guard watches the TLS handshake too (the connect timeout alone would restart with
    every byte of it)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts (the kernel does) and never says a word of TLS
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/v1"
        with pytest.raises(RemoteError) as err:
            RemoteChatModel(url, limits=ClientLimits(first_s=0.3))
    assert str(err.value) == (f"no answer from {url}/models within 0.3 s (the 'first' deadline; "
                              "raise it with --server-timeout first=SECONDS)")


def test_https_replies_deadlines_and_stop(tmp_path, monkeypatch):
    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("no openssl command to make a certificate")
    default_context = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: default_context(cafile=tls[0]))
    srv = HostileServer(chat=stream_of(["Hello", " there"]), tls=tls)
    with srv as url:
        m = RemoteChatModel(url, limits=ClientLimits(idle_s=0.5))
        assert url.startswith("https://") and m.reply(USER) == "Hello there"
        srv.chat = answer(200, [text_chunk("Hi"), *trickle(text_chunk(" there") * 3, 0.02)])
        text, events = collect(m.chat(USER))
        assert text == "Hi" and "sent no complete event for 0.5 s" in events[-1].message
        srv.chat = answer(200, [text_chunk("Hi"), *trickle(b"data: " + b"t" * 1000, 0.02)])
        cancel, events = threading.Event(), []
        worker = threading.Thread(target=lambda: events.extend(m.chat(USER, cancel=cancel)))
        worker.start()
        wait_for(lambda: len(srv.requests) == 3, "three requests")
        cancel.set()
        worker.join(5)
        assert not worker.is_alive() and events[-1].reason == "cancelled"


def test_stop_works_before_the_first_byte():
    srv = HostileServer(chat=answer(RAW, [Pause(10)]))
    with srv as url:
        m = RemoteChatModel(url)
        cancel, events = threading.Event(), []
        worker = threading.Thread(target=lambda: events.extend(m.chat(USER, cancel=cancel)))
        worker.start()
        wait_for(lambda: bool(srv.requests), "a request")
        cancel.set()
        worker.join(5)
        assert not worker.is_alive()
    assert [type(e) for e in events] == [Done] and events[0].reason == "cancelled"


def test_stop_works_mid_line_on_a_connection_close_stream():
    """http.client drops conn.sock for a `Connection: close` answer; Stop must still reach the
    socket while a read waits for the end of a trickled line."""
    srv = HostileServer(chat=answer(200, [text_chunk("Hi"), *trickle(b"data: " + b"t" * 1000, 0.02)]))
    with srv as url:
        m = RemoteChatModel(url)
        cancel, events, started = threading.Event(), [], threading.Event()

        def consume():
            for e in m.chat(USER, cancel=cancel):
                events.append(e)
                started.set()

        worker = threading.Thread(target=consume)
        worker.start()
        assert started.wait(5)
        cancel.set()
        worker.join(5)  # the trickled line would take 20 s to end
        assert not worker.is_alive()
    assert events[-1].reason == "cancelled" and events[-1].text == "Hi"


def test_server_timeout_spec():
    limits = parse_server_timeout("first=300, total=none,idle=2.5")
    assert (limits.first_s, limits.idle_s, limits.total_s, limits.connect_s) == (300, 2.5, math.inf, 10)
    assert parse_server_timeout("connect=3").connect_s == 3
    for bad, words in [("", "needs first=SECONDS"), ("300", "'300' is not one of first=SECONDS"),
                       ("first=0", "first must be a positive number of seconds or none, not '0'"),
                       ("idle=-1", "idle must be"), ("total=nan", "total must be"),
                       ("connect=none", "connect must be a positive number of seconds, not 'none'"),
                       ("wait=5", "'wait=5' is not one of")]:
        with pytest.raises(LimitsError, match=words):
            parse_server_timeout(bad)


# ------------------------------------------------------------------------- odd shapes, no crash


@pytest.mark.parametrize("chunks, expected", [
    ([sse_chunk({"choices": 5}), text_chunk("ok", "stop")], "ok"),
    ([sse_chunk("[" * 100_000), text_chunk("ok", "stop")], None),
])
def test_odd_chunks_never_raise(chunks, expected):
    with HostileServer(chat=answer(200, chunks)) as url:
        text, events = collect(RemoteChatModel(url).chat(USER))
    if expected is None:
        assert isinstance(events[-1], ErrorEvent) and "unreadable stream chunk" in events[-1].message
    else:
        assert text == expected and events[-1].reason == "stop"


def test_odd_non_streamed_replies_never_raise():
    for body in ({"choices": [{"message": {"content": 5}}]}, ["not", "an", "object"],
                 {"choices": [{"message": {"content": "ok"}}], "usage": {"completion_tokens": True, "prompt_tokens": -3}}):
        with HostileServer(chat=answer(200, [json.dumps(body).encode()], "application/json")) as url:
            text, events = collect(RemoteChatModel(url).chat(USER))
        if text:
            assert events[-1].stats.prompt_tokens == 0 and events[-1].stats.generated_tokens == 1
        else:
            assert events == [ErrorEvent(f"{url} sent a reply that is not an OpenAI chat completion")]


# ------------------------------------------------------- lone surrogates through --web --server

SURROGATE_CASES = {
    "text": (None, answer(200, [b'data: {"choices":[{"index":0,"delta":{"content":"a\\udc00b"}}]}\n\n',
                                text_chunk("", "stop")])),
    "error chunk": (None, answer(200, [text_chunk("so far"), b'data: {"error": {"message": "bad \\ud800 x"}}\n\n'])),
    "error body": (None, answer(500, [b'{"error": {"message": "bad \\udc00 x"}}'], "application/json")),
    "model id": ([{"id": "m\ud800x", "owned_by": "o\udfffo"}], None),
}


@pytest.mark.parametrize("case", list(SURROGATE_CASES))
async def test_lone_surrogates_never_break_web_streams(aiohttp_client, case):
    """Each stream ends cleanly (the nanochat protocol's done event, OpenAI's [DONE]) and every
    byte the front-end writes is valid UTF-8."""
    from nanochat_tui.config import WebConfig
    from nanochat_tui.web import create_app

    models, chat = SURROGATE_CASES[case]
    with HostileServer(models=models, chat=chat) as url:
        backend = RemoteChatModel(url)
        client = await aiohttp_client(create_app(WebConfig(), [backend]))
        page = await client.get("/")
        assert page.status == 200
        (await page.read()).decode("utf-8")
        listing = await client.get("/v1/models")
        model = json.loads(await listing.read())["data"][0]["id"]
        assert model.encode("utf-8")
        for path, body, last in [("/chat/completions", {"messages": USER}, 'data: {"done": true}'),
                                 ("/v1/chat/completions", {"model": model, "stream": True, "messages": USER},
                                  "data: [DONE]")]:
            resp = await client.post(path, json=body)
            text = (await resp.read()).decode("utf-8")  # strict: a lone surrogate cannot be here
            assert resp.status == 200 and text.rstrip("\n").splitlines()[-1] == last, text
            if case in ("error chunk", "error body"):
                assert "bad \ufffd x" in text


# ------------------------------------------------------------------- through the command line


# The CLI's peak memory is read by a small Python parent that starts it and reads os.wait4's
# rusage. Measuring from pytest itself is wrong: Linux keeps the parent's resident size at fork
# in the child's ru_maxrss (it survives exec), and pytest's process may hold gigabytes of
# models by the time this test runs. A parent of ~10 MB leaves the child's own peak visible.
MEASURE_PEAK = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss * 1024))  # Linux reports KiB
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_cli(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI as a process, and its own peak resident memory in bytes. Output goes to files
    so nothing blocks on a full pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        command = [sys.executable, "-c", MEASURE_PEAK, peak.name, *cli_command(), *args]
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env or cli_env(),
                                start_new_session=True)
        # A hung CLI fails the test instead of hanging it: the whole group goes.
        killer = threading.Timer(60, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            proc.wait()
        finally:
            killer.cancel()
        out.seek(0)
        err.seek(0)
        rss = int(peak.read() or 0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()), rss


def test_cli_against_a_flooding_server_is_one_line_in_bounded_memory():
    models = (200, itertools.chain([b'{"data": ['], endless(b'{"id": "m"},' * 4096, 256 << 20)))
    srv = HostileServer(models_answer=models)
    with srv as url:
        out, rss = run_cli("--server", url, "-p", "hi")
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.splitlines() == [
            f"nanochat-tui: error: {url}/models sent more than 16 MiB; not read (client-mode cap on response bodies)"]
        assert hung_up(srv) and srv.bytes_sent < 64 << 20
    assert 0 < rss < 256 << 20  # the 256 MiB body was never held


def test_cli_cuts_an_endless_reply_at_max_tokens_and_honours_the_timeout_env():
    srv = HostileServer(chat=answer(200, endless(text_chunk("a" * 99 + " "), FLOOD)))
    with srv as url:
        out, _ = run_cli("--server", url, "-p", "hi", "-m", "8")
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.rstrip("\n")) == 8 * 32 + 1024
        assert hung_up(srv) and srv.bytes_sent < BOUNDED
    with HostileServer(models_answer=(200, [Pause(5)])) as url:
        out, _ = run_cli("--server", url, "-p", "hi", env=cli_env(NANOCHAT_SERVER_TIMEOUT="first=0.5"))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        (f"nanochat-tui: error: no answer from {url}/models within 0.5 s (the 'first' deadline; "
         "raise it with --server-timeout first=SECONDS)")]


def test_cli_server_timeout_flag_is_checked(capsys):
    from nanochat_tui.cli import main

    assert main(["--server", "http://127.0.0.1:9/v1", "--server-timeout", "first=soon", "-p", "hi"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nanochat-tui: error: --server-timeout: first must be a positive number of seconds or none, not 'soon'"]
    assert main(["--server-timeout", "first=5", "-p", "hi"]) == 2
    assert "--server-timeout is for client mode: add --server URL" in capsys.readouterr().err
