"""Client mode (nanochat_core.remote) against a real OpenAI-style HTTP server on loopback.

The server below is the stdlib http.server speaking OpenAI's streaming schema the way vLLM does
(chunked transfer encoding, `data: {...}` events, a usage chunk, `data: [DONE]`), plus the error
shapes a client meets: 401 for a wrong key, 404 for an unknown model, a refused top_k, a stream
that breaks, an error chunk, and a slow stream to stop mid-reply.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nanochat_core.chat import Message, SamplingParams, ValidationError
from nanochat_core.events import Done, ErrorEvent, TextDelta
from nanochat_core.model_info import ModelInfo
from nanochat_core.remote import RemoteChatModel, RemoteError
from nanochat_core.remote_limits import ClientLimits

MODELS = ["nanochat-d20", "slow", "emoji", "long", "broken", "error-chunk", "sse-comments", "no-stream", "stall"]


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"

    def log_message(self, *args):  # keep pytest output clean
        pass

    # -- helpers --
    def _json(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, type_: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": type_, "code": None}})

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Incorrect API key provided.", "authentication_error")
        return False

    def _chunk(self, raw: bytes) -> None:
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def _event(self, obj) -> None:
        self._chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")

    def _delta(self, content=None, finish=None) -> dict:
        delta = {} if content is None else {"content": content}
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    # -- endpoints --
    def do_GET(self):
        if not self._authorized():
            return
        if self.path != "/v1/models":
            return self._error(404, "Not Found")
        self._json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "tests"} for m in MODELS]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if not self._authorized():
            return
        if self.path != "/v1/chat/completions":
            return self._error(404, "Not Found")
        model = body.get("model")
        if model not in MODELS:
            return self._error(404, f"The model `{model}` does not exist.")
        if self.server.strict and "top_k" in body:
            return self._error(400, "Unrecognized request argument supplied: top_k")
        if model == "no-stream":
            return self._json(200, {"id": "c", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "whole reply"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(model, body)
            self._chunk(b"")  # end of the chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects.append(model)
            self.close_connection = True

    def _stream(self, model: str, body: dict) -> None:
        self._event({**self._delta(), "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        if model == "slow":
            for i in range(400):  # ~20 s if nobody stops it
                self._event(self._delta(f"tick{i} "))
                time.sleep(0.05)
            self._event(self._delta(finish="stop"))
        elif model == "stall":
            # Three ticks, then only SSE comments (which the client skips): a client blocked
            # in a read can end only if its cancel shuts the socket. The comments let this
            # server notice the hang-up; ~20 s if nobody does.
            for i in range(3):
                self._event(self._delta(f"tick{i} "))
            for _ in range(400):
                self._chunk(b": waiting\n\n")
                time.sleep(0.05)
            self._event(self._delta(finish="stop"))
        elif model == "emoji":
            # An emoji split between two chunks as JSON surrogate escapes, then a lone half.
            self._event(b'{"choices":[{"index":0,"delta":{"content":"smile \\ud83d"},"finish_reason":null}]}')
            self._event(b'{"choices":[{"index":0,"delta":{"content":"\\ude00 ok"},"finish_reason":null}]}')
            self._event(b'{"choices":[{"index":0,"delta":{"content":" \\ud83d"},"finish_reason":"stop"}]}')
        elif model == "long":
            self._event(self._delta("a b c"))
            self._event(self._delta(finish="length"))
        elif model == "broken":
            self._event(self._delta("partial"))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError  # stop writing; the client sees a truncated body
        elif model == "error-chunk":
            self._event(self._delta("so far"))
            self._event({"error": {"message": "CUDA out of memory", "type": "server_error"}})
        elif model == "sse-comments":
            self._chunk(b": keep-alive\n\n")
            self._chunk(b"event: message\ndata: " + json.dumps(self._delta("multi")).encode() + b"\n\n")
            self._chunk(b"data: " + json.dumps(self._delta(" line", "stop")).encode() + b"\n\n")
        else:  # an echo of the request, word by word, as an LLM streams
            words = ["You", " said:", " " + body["messages"][-1]["content"], "."]
            for w in words:
                self._event(self._delta(w))
            self._event(self._delta(finish="stop"))
            self._event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
                         "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}})
        self._event(b"[DONE]")


@pytest.fixture
def server():
    """Start a fresh fake server on 127.0.0.1:<free port>; returns a configurator."""
    started = []

    def start(api_key: str | None = None, strict: bool = False) -> ThreadingHTTPServer:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
        srv.daemon_threads = True
        srv.api_key, srv.strict, srv.requests, srv.disconnects = api_key, strict, [], []
        srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def collect(events) -> tuple[str, list]:
    events = list(events)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


USER = [{"role": "user", "content": "hello there"}]


def test_streams_a_reply_with_stats_and_sends_openai_fields(server):
    srv = server()
    m = RemoteChatModel(srv.url)
    assert m.model == "nanochat-d20"  # the first id from GET /models
    assert isinstance(m.info, ModelInfo) and m.info.generation == "remote" and m.info.source == "remote"
    assert m.info.model_tag == "nanochat-d20" and m.info.device == srv.url
    assert "nanochat-d20" in m.info.describe() and srv.url in m.info.describe()
    assert any(f"serves {len(MODELS)} models" in n for n in m.notices)

    sampling = SamplingParams(temperature=0.0, top_k=50, max_tokens=64, seed=7)
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    text, events = collect(m.chat(messages, sampling))
    assert text == "You said: hello there."
    assert [type(e) for e in events] == [TextDelta] * 4 + [Done]
    done = events[-1]
    assert done.reason == "stop" and done.text == text
    assert done.stats.generated_tokens == 4 and done.stats.prompt_tokens == 11  # from usage
    assert 0 <= done.stats.ttft_s <= done.stats.total_s

    sent = srv.requests[-1]
    assert sent["model"] == "nanochat-d20" and sent["stream"] is True
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 64 and sent["seed"] == 7
    assert sent["top_k"] == 50 and sent["stream_options"] == {"include_usage": True}


def test_assistant_parts_are_sent_as_their_text(server):
    srv = server()
    m = RemoteChatModel(srv.url, model="nanochat-d20")
    history = [{"role": "user", "content": "12*7?"},
               {"role": "assistant", "content": [{"type": "text", "text": "Sure. "}, {"type": "python", "text": "12*7"},
                                                 {"type": "python_output", "text": "84"}, {"type": "text", "text": "84."}]},
               {"role": "user", "content": "thanks"}]
    collect(m.chat(history, SamplingParams(top_k=0, seed=None)))
    sent = srv.requests[-1]
    assert sent["messages"][1] == {"role": "assistant", "content": "Sure. 84."}
    assert "top_k" not in sent and "seed" not in sent  # full vocabulary / random seed: nothing to send


def test_validation_uses_the_rulebook_before_any_request(server):
    srv = server()
    m = RemoteChatModel(srv.url)
    with pytest.raises(ValidationError, match="At least one message is required"):
        m.chat([], SamplingParams())
    with pytest.raises(ValidationError, match="The last message must be from the user"):
        m.chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(ValidationError, match="Message 0 has empty content"):
        m.chat([Message("user", "")])
    assert srv.requests == []


def test_finish_reason_length_and_sse_details(server):
    srv = server()
    m = RemoteChatModel(srv.url, model="long")
    text, events = collect(m.chat(USER))
    assert text == "a b c" and events[-1].reason == "length"
    assert events[-1].stats.generated_tokens == 1  # no usage chunk: counted chunks

    m = RemoteChatModel(srv.url, model="sse-comments")
    text, events = collect(m.chat(USER))
    assert text == "multi line" and events[-1].reason == "stop"


def test_server_that_ignores_stream_true(server):
    srv = server()
    text, events = collect(RemoteChatModel(srv.url, model="no-stream").chat(USER))
    assert text == "whole reply" and events[-1].reason == "stop" and events[-1].stats.generated_tokens == 2


def test_split_surrogates_arrive_whole_and_valid(server):
    srv = server()
    text, events = collect(RemoteChatModel(srv.url, model="emoji").chat(USER))
    assert text == "smile \U0001F600 ok \ufffd"
    for e in events:
        if isinstance(e, TextDelta):
            e.text.encode("utf-8")  # never a lone surrogate: printable everywhere
    assert "\U0001F600" in next(e.text for e in events if isinstance(e, TextDelta) and "\U0001F600" in e.text)


def test_cancel_unblocks_a_read_and_closes_the_connection(server):
    srv = server()
    m = RemoteChatModel(srv.url, model="stall")
    cancel = threading.Event()
    events, three_ticks = [], threading.Event()

    def consume():
        for e in m.chat(USER, SamplingParams(), cancel=cancel):
            events.append(e)
            if len([x for x in events if isinstance(x, TextDelta)]) == 3:
                three_ticks.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    assert three_ticks.wait(30)
    # The server now sends nothing the client yields: the consumer sits in a read, and
    # only the cancel watcher shutting the socket can end it (else it waits ~20 s).
    cancel.set()
    worker.join(15)
    assert not worker.is_alive(), "cancel did not end a stream blocked in a read"
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "cancelled"
    assert done.text == "tick0 tick1 tick2 "
    deadline = time.monotonic() + 15  # the server notices the closed connection on its next write
    while "stall" not in srv.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "stall" in srv.disconnects


def test_cancel_before_start_sends_nothing(server):
    srv = server()
    m = RemoteChatModel(srv.url)
    cancel = threading.Event()
    cancel.set()
    _, events = collect(m.chat(USER, cancel=cancel))
    assert [e.reason for e in events] == ["cancelled"] and srv.requests == []


def test_errors_during_the_stream_are_error_events(server):
    srv = server()
    text, events = collect(RemoteChatModel(srv.url, model="error-chunk").chat(USER))
    assert text == "so far" and isinstance(events[-1], ErrorEvent)
    assert events[-1].message == "CUDA out of memory"

    text, events = collect(RemoteChatModel(srv.url, model="broken").chat(USER))
    assert text == "partial" and isinstance(events[-1], ErrorEvent)
    assert "\n" not in events[-1].message


def test_idle_deadline_is_an_error_event(server):
    srv = server()
    m = RemoteChatModel(srv.url, model="slow", limits=ClientLimits(idle_s=0.01))
    # The first chunk arrives at once, later ones every 50 ms: longer than 10 ms.
    _, events = collect(m.chat(USER))
    assert isinstance(events[-1], ErrorEvent) and "sent no complete event for 0.01 s" in events[-1].message


def test_wrong_or_missing_api_key(server):
    srv = server(api_key="sekrit")
    with pytest.raises(RemoteError, match=r"requires an API key \(HTTP 401: Incorrect API key provided.\); pass --api-key"):
        RemoteChatModel(srv.url)
    with pytest.raises(RemoteError, match=r"refused the API key \(HTTP 401: Incorrect API key provided.\)"):
        RemoteChatModel(srv.url, api_key="wrong")
    m = RemoteChatModel(srv.url, api_key="sekrit")
    assert collect(m.chat(USER))[0] == "You said: hello there."
    m.api_key = "rotated"  # a key that stops working between replies: an ErrorEvent, not a crash
    _, events = collect(m.chat(USER))
    assert isinstance(events[-1], ErrorEvent) and "refused the API key" in events[-1].message


def test_unknown_model(server):
    srv = server()
    with pytest.raises(RemoteError) as err:
        RemoteChatModel(srv.url, model="gpt-17")
    assert str(err.value).startswith(f"model 'gpt-17' not found on {srv.url} (available: nanochat-d20, slow")
    m = RemoteChatModel(srv.url, model="gpt-17", check=False)  # the server's own 404 words
    _, events = collect(m.chat(USER))
    assert events[-1] == ErrorEvent(f"{srv.url} answered HTTP 404: The model `gpt-17` does not exist.")


def test_unreachable_server_and_bad_urls(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteError, match=r"cannot reach http://127.0.0.1:\d+/v1: connection refused"):
        RemoteChatModel(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(RemoteError, match="must be an http:// or https:// URL"):
        RemoteChatModel("127.0.0.1:8000")
    srv = server()
    with pytest.raises(RemoteError, match=r"answered HTTP 404: Not Found; is the API under .*/v1\?"):
        RemoteChatModel(srv.url.removesuffix("/v1"))
    # A server that goes away after connecting: the reply is an ErrorEvent.
    m = RemoteChatModel(srv.url)
    srv.shutdown()
    srv.server_close()
    _, events = collect(m.chat(USER))
    assert isinstance(events[-1], ErrorEvent) and "connection refused" in events[-1].message


def test_server_refusing_top_k_is_retried_without_it(server):
    srv = server(strict=True)
    m = RemoteChatModel(srv.url)
    text, _ = collect(m.chat(USER, SamplingParams(top_k=50)))
    assert text == "You said: hello there."
    assert "top_k" in srv.requests[0] and "top_k" not in srv.requests[1]
    assert any("does not accept top_k" in n for n in m.notices)
    collect(m.chat(USER, SamplingParams(top_k=50)))
    assert "top_k" not in srv.requests[2] and len(srv.requests) == 3  # remembered: no second refusal


def test_submit_and_reply(server):
    srv = server()
    m = RemoteChatModel(srv.url)
    assert m.reply(USER) == "You said: hello there."
    got, finished = [], threading.Event()

    def emit(e):
        got.append(e)
        if isinstance(e, (Done, ErrorEvent)):
            finished.set()

    m.batched().submit(USER, SamplingParams(), emit)
    assert finished.wait(5) and got[-1].text == "You said: hello there."


def test_importing_remote_does_not_import_torch():
    code = ("import sys, nanochat_core.remote; "
            "bad = [m for m in ('torch', 'aiohttp', 'textual') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
