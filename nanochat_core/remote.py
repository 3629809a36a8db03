"""Client mode: chat with any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, OpenAI, or
nanochat-tui's own `--web` /v1 API) through the interface the front-ends use from ChatModel.

    from nanochat_core.remote import RemoteChatModel
    m = RemoteChatModel("http://gpu-box:8000/v1", api_key=None, model=None)  # RemoteError if unusable
    for event in m.chat([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0)): ...

- `.info` (a ModelInfo: generation "remote", source "remote", model_tag = the model id, device =
  the server URL), `.notices` (list[str]) and `.chat(messages, sampling, cancel=None)` yielding
  the same events as a local model: TextDelta, then Done(reason "stop" | "length" | "cancelled",
  GenerationStats from the stream's timing), or ErrorEvent(one line).
- Messages go through the same rulebook (nanochat_core.chat.validate_messages) before anything
  is sent, so a user sees the same words for the same mistake as with a local model.
- Connect-time problems (unreachable server, wrong or missing key, unknown model, not an
  OpenAI-compatible URL) raise RemoteError with one line; it is a CheckpointError (a ValueError),
  so every front-end already shows it as it shows a checkpoint that cannot be loaded (banner /
  stderr + exit 2). Problems during a reply arrive as ErrorEvent.
- Stop: setting `cancel` closes the connection (a watcher shuts the socket down at once, even
  while waiting for the next chunk), which is how OpenAI-style servers learn to stop generating;
  the stream then ends with Done(reason="cancelled").
- Bounds (nanochat_core.remote_limits, docs/security.md): every line, event and body from the
  server is capped, a reply is not read far past `max_tokens` (it ends as Done("length") with a
  notice), and deadlines (first event, idle between events, total) end a stalled or trickling
  server with one line. Each cap or deadline names itself in the message.

Sampling on the wire: `temperature`, `max_tokens`, `seed` (OpenAI's names), and `top_k` as an
extra top-level field, which vLLM, SGLang, llama.cpp's server and nanochat-tui read and most
OpenAI-compatible servers ignore. A server that rejects it (OpenAI itself answers 400 to unknown
fields) is retried once without it, and a notice says top-k is not applied. The same goes for
`stream_options` (asks for token counts in the last chunk) and `seed`.

Standard library only (http.client): importing this module imports neither torch nor aiohttp.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

from .chat import Message, SamplingParams, validate_messages
from .checkpoints import CheckpointError
from .conversation import Conversation
from .events import Done, ErrorEvent, Event, GenerationStats, TextDelta
from .model_info import ModelInfo
from .remote_limits import (
    DEFAULT_LIMITS,
    CapExceeded,
    ClientLimits,
    ExchangeGuard,
    read_capped,
    size_text,
)
from .text import compact_line

USER_AGENT = "nanochat-tui"
OPTIONAL_FIELDS = ("top_k", "stream_options", "seed")  # dropped if a server refuses them


class RemoteError(CheckpointError):
    """The server cannot be used (unreachable, key refused, model unknown). `str()` is one line."""


@dataclass(frozen=True)
class RemoteModelInfo(ModelInfo):
    """ModelInfo for a model behind an OpenAI-compatible server; size fields are unknown (0)."""

    server: str = ""
    owned_by: str | None = None

    @property
    def is_remote(self) -> bool:
        return True

    @property
    def short_name(self) -> str:
        return f"{self.model_tag} @ {urlsplit(self.server).netloc or self.server}"

    def describe(self) -> str:
        owner = f", owned by {self.owned_by}" if self.owned_by else ""
        return f"{self.model_tag} on {self.server} (OpenAI-compatible server{owner})"


def remote_info(server: str, model: str, owned_by: str | None = None) -> RemoteModelInfo:
    return RemoteModelInfo(
        generation="remote", source="remote", model_tag=model, step=0, checkpoint_dir=server,
        is_demo=False, n_layer=0, n_embd=0, n_head=0, n_kv_head=0, vocab_size=0, sequence_len=0,
        window_pattern=None, softcap=0.0, params=0, device=server, dtype="remote",
        server=server, owned_by=owned_by,
    )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _one_line(text: object, limit: int = 300) -> str:
    """A server's words as one safe line (they end up in errors shown on a terminal)."""
    return compact_line(text, limit)


def error_message(body: bytes) -> str:
    """The server's own words from an error body: OpenAI's {"error": {"message"}}, FastAPI's
    {"detail"}, {"message"}, or the text itself."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return _one_line(text) if text else ""
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _one_line(err["message"])
        if isinstance(err, str) and err:
            return _one_line(err)
        for key in ("detail", "message"):
            if isinstance(obj.get(key), str) and obj[key]:
                return _one_line(obj[key])
            if key == "detail" and obj.get(key):
                return _one_line(json.dumps(obj[key]))
    return _one_line(text)


def _network_problem(e: BaseException, where: str, connect_timeout: float) -> str:
    if isinstance(e, ConnectionRefusedError):
        return f"cannot reach {where}: connection refused (is the server running?)"
    if isinstance(e, socket.gaierror):
        return f"cannot reach {where}: unknown host ({_one_line(e.strerror or e)})"
    if isinstance(e, ssl.SSLError):
        return f"cannot reach {where}: TLS error ({_one_line(e.reason or e)})"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return (f"cannot reach {where}: no connection within {connect_timeout:g} s "
                "(raise it with --server-timeout connect=SECONDS)")
    if isinstance(e, http.client.HTTPException):
        return f"{where} did not answer with HTTP ({type(e).__name__})"
    if isinstance(e, OSError):
        return f"cannot reach {where}: {_one_line(e.strerror or e)}"
    return f"cannot reach {where}: {_one_line(e)}"


def _join_surrogates(text: str) -> str:
    """Pair UTF-16 surrogate halves (a server may split an emoji's \\ud83d\\ude00 escape over two
    chunks) and turn any lone one into U+FFFD, so the text is valid Unicode and printable."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _wire_messages(messages: Sequence[Message]) -> list[dict]:
    """Chat messages as OpenAI expects them: string content. nanochat's assistant parts (tool
    use) are sent as their text parts, as nanochat's web page showed them."""
    out = []
    for m in messages:
        if isinstance(m.content, str):
            content = m.content
        else:
            content = "".join(p["text"] for p in m.content if p["type"] == "text")
        if m.role == "assistant" and not content:
            continue  # an empty reply (nanochat keeps it; servers refuse empty messages)
        out.append({"role": m.role, "content": content})
    return out


# ---------------------------------------------------------------------------------------------
# Reading a stream within the caps


class _EventReader:
    """The server-sent-events framing over an HTTP response: complete `data:` payloads, one at a
    time, with every line and event bounded (ClientLimits). Comments, `event:`, `id:` and
    `retry:` lines are ignored, as OpenAI's clients ignore them."""

    def __init__(self, resp: Any, limits: ClientLimits, where: str) -> None:
        self._resp = resp
        self._limits = limits
        self._where = where
        self.ended = False  # the body ended (the server closed it)

    def next_data(self) -> bytes | None:
        """The next event's data (its lines joined by newlines); None at the end of the body.
        OSError / HTTPException from the socket pass through; CapExceeded past a cap."""
        lines: list[bytes] = []
        size = 0
        max_line = self._limits.max_line_bytes
        while True:
            line = self._resp.readline(max_line + 2)  # a line of max_line bytes plus its CRLF
            if len(line.rstrip(b"\r\n")) > max_line:
                raise CapExceeded(f"{self._where} sent a stream line longer than {size_text(max_line)}; "
                                  "the reply was cut off (client-mode cap on one line)")
            if not line:
                self.ended = True
                return b"\n".join(lines) if lines else None
            text = line.rstrip(b"\r\n")
            if not text:  # a blank line ends the event
                if lines:
                    return b"\n".join(lines)
                continue
            field, _, value = text.partition(b":")
            if field != b"data":
                continue
            value = value[1:] if value.startswith(b" ") else value
            size += len(value) + 1
            if size > self._limits.max_event_bytes:
                raise CapExceeded(f"{self._where} sent a stream event larger than "
                                  f"{size_text(self._limits.max_event_bytes)} without ending it; the reply "
                                  "was cut off (client-mode cap on one event)")
            lines.append(value)


def _hang_up(guard: ExchangeGuard, conn: http.client.HTTPConnection, resp: Any = None) -> None:
    """End an exchange: stop its watcher and close the socket for good. The response holds its
    own reference to the socket (http.client reads a `Connection: close` body through a file
    made from it), so closing the connection alone would leave the server writing into it."""
    guard.close()
    if resp is not None:
        resp.close()
    conn.close()


def _count(value: object) -> int | None:
    """A token count from a server's usage object: a non-negative int, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# ---------------------------------------------------------------------------------------------
# The client


class RemoteChatModel:
    """The ChatModel interface over an OpenAI-compatible /chat/completions stream. Thread-safe:
    every chat() opens its own connection, so a web server may call it from many threads.
    `limits`: the caps and deadlines (nanochat_core.remote_limits; docs/security.md)."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None,
                 check: bool = True, limits: ClientLimits | None = None):
        parts = urlsplit((base_url or "").strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(
                f"--server must be an http:// or https:// URL such as http://HOST:8000/v1, not {base_url!r}"
            )
        try:
            self._port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RemoteError(f"--server {base_url!r} has an invalid port") from None
        self._https = parts.scheme == "https"
        self._tls = ssl.create_default_context() if self._https else None
        self._host = parts.hostname
        self._prefix = parts.path.rstrip("/")
        self.base_url = f"{parts.scheme}://{parts.netloc}{self._prefix}"
        self.api_key = api_key or None
        self.limits = limits or DEFAULT_LIMITS
        self.notices: list[str] = []
        self._dropped: set[str] = set()  # optional fields this server refused
        self._lock = threading.Lock()
        owned_by = None
        if check:
            model, owned_by = self._pick_model(model)
        elif not model:
            raise RemoteError("a model id is needed when the server is not asked for its models")
        self.model = model  # sent back to the server exactly as it spelled it
        # What we show and advertise (`--web --server` answers under this id) must be valid
        # Unicode: a lone surrogate from a JSON escape would break every UTF-8 writer.
        self.info = remote_info(self.base_url, _join_surrogates(model),
                                _join_surrogates(owned_by) if owned_by else None)

    def _notice(self, text: str) -> None:
        with self._lock:
            if text not in self.notices:
                self.notices.append(text)

    # -- HTTP --

    def _headers(self, stream: bool = False) -> dict:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/event-stream" if stream else "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _open(self, cancel: threading.Event, where: str,
              started: float | None = None) -> tuple[http.client.HTTPConnection, ExchangeGuard]:
        """A connection (not yet connected) and the guard over its exchange."""
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.limits.connect_s, context=self._tls)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.limits.connect_s)
        return conn, ExchangeGuard(self.limits, cancel, where=where, started=started)

    def _send(self, conn: http.client.HTTPConnection, guard: ExchangeGuard, method: str, path: str,
              payload: dict | None = None, stream: bool = False) -> http.client.HTTPResponse:
        """Connect, send one request, read the status line and headers. OSError / HTTPException
        for network problems (or when the guard shut the socket: see its `tripped`)."""
        # TCP first, then TLS here rather than in HTTPSConnection.connect, so that the guard
        # watches the handshake too (a server may stall it or send it a byte at a time).
        http.client.HTTPConnection.connect(conn)
        guard.attach(conn.sock)
        if self._https:
            conn.sock = self._tls.wrap_socket(conn.sock, server_hostname=self._host)
        conn.sock.settimeout(None)  # from here on the guard's deadlines decide, not each recv
        headers = self._headers(stream)
        body = None
        if payload is not None:
            body = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn.request(method, self._prefix + path, body=body, headers=headers)
        return conn.getresponse()

    def _refused(self, status: int, message: str) -> str:
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 401 and not self.api_key:
            return f"{self.base_url} requires an API key ({detail}); pass --api-key"
        if status in (401, 403):
            return f"{self.base_url} refused the API key ({detail})"
        return ""

    def _error_body(self, resp) -> str:
        """The server's words from an error answer, read within the error-body cap."""
        try:
            return error_message(read_capped(resp, self.limits.max_error_bytes))
        except CapExceeded as e:
            return f"(an error body over {e}, not read: client-mode cap)"

    # -- model selection (connect time) --

    def _pick_model(self, wanted: str | None) -> tuple[str, str | None]:
        where = f"{self.base_url}/models"
        # Nothing stops a connect but its deadlines: the guard watches an event never set.
        conn, guard = self._open(threading.Event(), where)
        resp = None
        try:
            resp = self._send(conn, guard, "GET", "/models")
            status = resp.status
            body = read_capped(resp, self.limits.max_body_bytes) if status == 200 else b""
            message = "" if status == 200 else self._error_body(resp)
        except CapExceeded as e:
            raise RemoteError(f"{where} sent more than {e}; not read (client-mode cap on response bodies)") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise RemoteError(guard.tripped or _network_problem(e, self.base_url, self.limits.connect_s)) from None
        finally:
            _hang_up(guard, conn, resp)
        if guard.tripped:  # the body ended early because a deadline shut the socket
            raise RemoteError(guard.tripped)
        if status != 200:
            refused = self._refused(status, message)
            if refused:
                raise RemoteError(refused)
            if status == 404 and wanted:
                self.notices.append(f"{where} does not exist here; using model {wanted!r} unchecked")
                return wanted, None
            hint = ""
            if status == 404 and not self._prefix.endswith("/v1"):
                hint = f"; is the API under {self.base_url}/v1?"
            elif status == 404:
                hint = "; pass --model to name the model"
            raise RemoteError(f"{where} answered HTTP {status}{': ' + message if message else ''}{hint}")
        try:
            listing = json.loads(body.decode("utf-8"))
            models = [m for m in listing["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise RemoteError(f"{where} did not return an OpenAI model list; is {self.base_url} an OpenAI-compatible API?") from None
        ids = [m["id"] for m in models]
        if wanted:
            if wanted not in ids:
                available = ", ".join(_one_line(i, 80) for i in ids[:8]) + (" …" if len(ids) > 8 else "") if ids else "none"
                raise RemoteError(f"model {wanted!r} not found on {self.base_url} (available: {available})")
            chosen = next(m for m in models if m["id"] == wanted)
        else:
            if not models:
                raise RemoteError(f"{self.base_url} serves no models")
            chosen = models[0]
            if len(models) > 1:
                self.notices.append(f"{self.base_url} serves {len(models)} models; using "
                                    f"{_join_surrogates(chosen['id'])!r} (choose with --model)")
        owned_by = chosen.get("owned_by")
        return chosen["id"], owned_by if isinstance(owned_by, str) else None

    # -- the ChatModel interface --

    def chat(self, request: "Conversation | Sequence[Any]", sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError before any request), then stream the server's reply
        to `request` (a Conversation, or role/content messages). Blocking: run it in a worker
        thread, like a local model's chat()."""
        if isinstance(request, Conversation):
            request.validate()
            clean = request.request_messages()
        else:
            clean = validate_messages(request)
        return self._stream(clean, sampling or SamplingParams(), cancel)

    def payload(self, messages: Sequence[Message], sampling: SamplingParams) -> dict:
        """The /chat/completions request body (fields a server refused before are left out)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _wire_messages(messages),
            "stream": True,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.top_k:  # None / 0 = the full vocabulary: nothing to send
            body["top_k"] = sampling.top_k
        body["stream_options"] = {"include_usage": True}
        with self._lock:
            for name in self._dropped:
                body.pop(name, None)
        return body

    def _stream(self, messages: list[Message], sampling: SamplingParams,
                cancel: threading.Event | None) -> Iterator[Event]:
        start = time.perf_counter()
        started = time.monotonic()  # the total deadline counts from here, over every retry
        cancel = cancel or threading.Event()
        if cancel.is_set():
            yield Done("cancelled", GenerationStats(0, 0, 0.0, 0.0))
            return
        body = self.payload(messages, sampling)
        for _attempt in range(len(OPTIONAL_FIELDS) + 1):
            conn, guard = self._open(cancel, self.base_url, started)
            try:
                resp = self._send(conn, guard, "POST", "/chat/completions", body, stream=True)
            except (OSError, http.client.HTTPException, ValueError) as e:
                _hang_up(guard, conn)
                if cancel.is_set() or guard.tripped == "cancelled":
                    yield Done("cancelled", GenerationStats(0, 0, 0.0, time.perf_counter() - start))
                else:
                    yield ErrorEvent(guard.tripped or _network_problem(e, self.base_url, self.limits.connect_s))
                return
            if resp.status == 200:
                break
            try:
                message = self._error_body(resp)
            except (OSError, http.client.HTTPException, ValueError):
                message = ""
            finally:
                _hang_up(guard, conn, resp)
            if guard.tripped:
                yield (Done("cancelled", GenerationStats(0, 0, 0.0, time.perf_counter() - start))
                       if guard.tripped == "cancelled" else ErrorEvent(guard.tripped))
                return
            refused_field = next((f for f in OPTIONAL_FIELDS if f in body and resp.status in (400, 422)
                                  and re.search(rf"\b{f}\b", message)), None)
            if refused_field:
                body.pop(refused_field)
                with self._lock:
                    if refused_field not in self._dropped:
                        self._dropped.add(refused_field)
                        self.notices.append(f"{self.base_url} does not accept {refused_field}; sent without it"
                                            + (" (top-k is not applied)" if refused_field == "top_k" else ""))
                continue
            refused = self._refused(resp.status, message)
            yield ErrorEvent(refused or f"{self.base_url} answered HTTP {resp.status}"
                             + (f": {message}" if message else ""))
            return
        else:  # pragma: no cover - every optional field refused and still 400
            yield ErrorEvent(f"{self.base_url} refused the request")
            return
        try:
            yield from self._read_stream(resp, guard, cancel, start, sampling.max_tokens)
        finally:
            _hang_up(guard, conn, resp)

    def _read_stream(self, resp, guard: ExchangeGuard, cancel: threading.Event, start: float,
                     max_tokens: int) -> Iterator[Event]:
        limits = self.limits
        pieces: list[str] = []
        length = 0  # characters of reply text so far
        max_chars = limits.reply_chars(max_tokens)
        max_events = limits.reply_events(max_tokens)
        events = 0
        chunks = 0
        first: float | None = None
        held = ""  # a high surrogate waiting for its other half
        finish: str | None = None
        usage: dict = {}
        saw_done = False

        def stats() -> GenerationStats:
            now = time.perf_counter()
            generated = _count(usage.get("completion_tokens"))
            prompt = _count(usage.get("prompt_tokens"))
            return GenerationStats(
                prompt_tokens=prompt if prompt is not None else 0,
                generated_tokens=generated if generated is not None else chunks,
                ttft_s=(first if first is not None else now) - start,
                total_s=now - start,
            )

        def done(reason: str) -> Done:
            text = "".join(pieces) + (_join_surrogates(held) if held else "")
            parts = ({"type": "text", "text": text},) if text else ()
            return Done(reason, stats(), (), parts)

        def past_max_tokens(what: str) -> Done:
            """The server ignores max_tokens: stop reading (closing the connection tells it to
            stop) and end as a reply cut at max tokens."""
            self._notice(f"{self.base_url} kept sending past max_tokens={max_tokens}: stopped reading after "
                         f"{what} (client-mode cap: {limits.chars_per_token} characters or "
                         f"{limits.events_per_token} events per token; docs/security.md)")
            return done("length")

        def interrupted(e: BaseException | None) -> Event:
            """Why a read ended early: Stop, a deadline, or the network."""
            if cancel.is_set() or guard.tripped == "cancelled":
                return done("cancelled")
            if guard.tripped:
                return ErrorEvent(guard.tripped)
            if e is None:
                return ErrorEvent(f"{self.base_url} closed the stream before the reply was finished")
            return ErrorEvent(f"the connection to {self.base_url} broke during the reply "
                              f"({_one_line(e) or type(e).__name__})")

        content_type = resp.getheader("Content-Type", "") or ""
        if "text/event-stream" not in content_type and "json" in content_type:
            guard.whole_body()
            yield from self._whole_reply(resp, start, max_chars, interrupted)  # a server that ignored stream=true
            return
        reader = _EventReader(resp, limits, self.base_url)
        while True:
            try:
                data = reader.next_data()
            except CapExceeded as e:
                yield interrupted(None) if guard.tripped else ErrorEvent(str(e))
                return
            except (OSError, http.client.HTTPException, ValueError) as e:
                yield interrupted(e)
                return
            if cancel.is_set() or guard.tripped:
                yield interrupted(None)
                return
            if data is None:
                break
            guard.event()
            events += 1
            data = data.strip()
            if data == b"[DONE]":
                saw_done = True
                break
            try:
                chunk = json.loads(data.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                yield ErrorEvent(f"{self.base_url} sent an unreadable stream chunk: {_one_line(data[:200].decode('utf-8', 'replace'), 120)}")
                return
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                yield ErrorEvent(error_message(data) or "the server reported an error")
                return
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
                    text = held + content
                    held = ""
                    if "\ud800" <= text[-1] <= "\udbff":
                        text, held = text[:-1], text[-1]
                    text = _join_surrogates(text)
                    if length + len(text) > max_chars:
                        text, held = text[: max_chars - length], ""
                        if text:
                            pieces.append(text)
                            yield TextDelta(text)
                        yield past_max_tokens(f"{max_chars} characters")
                        return
                    if text:
                        length += len(text)
                        pieces.append(text)
                        yield TextDelta(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            if events > max_events:
                yield past_max_tokens(f"{max_events} events")
                return
            if reader.ended:
                break
        if cancel.is_set():
            yield done("cancelled")
        elif finish is None and not saw_done:
            yield interrupted(None)
        else:
            if held:
                yield TextDelta(_join_surrogates(held))
                pieces.append(_join_surrogates(held))
                held = ""
            yield done("length" if finish == "length" else "stop")

    def _whole_reply(self, resp, start: float, max_chars: int,
                     interrupted: Callable[[BaseException | None], Event]) -> Iterator[Event]:
        try:
            raw = read_capped(resp, self.limits.max_body_bytes)
        except CapExceeded as e:
            yield ErrorEvent(f"{self.base_url} sent a reply larger than {e}; not read (client-mode cap on response bodies)")
            return
        except (OSError, http.client.HTTPException, ValueError) as e:
            yield interrupted(e)
            return
        try:
            obj = json.loads(raw.decode("utf-8", errors="replace"))
            choice = obj["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, (str, type(None))):
                raise TypeError(content)
            text = _join_surrogates(content or "")
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            yield ErrorEvent(f"{self.base_url} sent a reply that is not an OpenAI chat completion")
            return
        now = time.perf_counter()
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        if len(text) > max_chars:
            text, reason = text[:max_chars], "length"
            self._notice(f"{self.base_url} sent a reply past max_tokens: cut at {max_chars} characters "
                         "(client-mode cap; docs/security.md)")
        if text:
            yield TextDelta(text)
        prompt, generated = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        stats = GenerationStats(
            prompt_tokens=prompt if prompt is not None else 0,
            generated_tokens=generated if generated is not None else (1 if text else 0),
            ttft_s=now - start, total_s=now - start,
        )
        yield Done(reason, stats, (), ({"type": "text", "text": text},) if text else ())

    # -- conveniences shared with ChatModel / BatchedChatModel --

    def reply(self, messages: Sequence[Any], sampling: SamplingParams | None = None) -> str:
        """The whole reply text, for scripts; raises RuntimeError on an ErrorEvent."""
        for event in self.chat(messages, sampling):
            if isinstance(event, ErrorEvent):
                raise RuntimeError(event.message)
            if isinstance(event, Done):
                return event.text
        return ""

    def submit(self, messages: Sequence[Any], sampling: SamplingParams, emit: Callable[[Event], None],
               cancel: threading.Event | None = None) -> threading.Event:
        """Non-blocking, like BatchedChatModel.submit: validate now (may raise ValidationError),
        then call `emit` with each event from a worker thread. Returns the cancel event."""
        cancel = cancel or threading.Event()
        events = self.chat(messages, sampling, cancel)

        def run() -> None:
            try:
                for event in events:
                    emit(event)
            except Exception as e:  # pragma: no cover - chat() turns failures into ErrorEvent
                emit(ErrorEvent(_one_line(e)))

        threading.Thread(target=run, name="nanochat-remote", daemon=True).start()
        return cancel

    def batched(self, max_batch: int = 8) -> "RemoteChatModel":
        """The server batches; this client is already safe to share between threads."""
        return self

    def close(self) -> None:
        """Nothing to release: connections live only as long as one reply."""
