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
- Stop: setting `cancel` closes the connection (a watcher shuts the socket down within ~50 ms,
  even while waiting for the next chunk), which is how OpenAI-style servers learn to stop
  generating; the stream then ends with Done(reason="cancelled").

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
from .events import Done, ErrorEvent, Event, GenerationStats, TextDelta
from .model_info import ModelInfo
from .text import compact_line

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0  # longest wait for the next chunk (a long prefill on a busy server)
CANCEL_POLL_S = 0.05
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
        return f"cannot reach {where}: unknown host ({e.strerror or e})"
    if isinstance(e, ssl.SSLError):
        return f"cannot reach {where}: TLS error ({_one_line(e.reason or e)})"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"no answer from {where} within {connect_timeout:g} s"
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
        out.append({"role": m.role, "content": content})
    return out


# ---------------------------------------------------------------------------------------------
# The client


class RemoteChatModel:
    """The ChatModel interface over an OpenAI-compatible /chat/completions stream. Thread-safe:
    every chat() opens its own connection, so a web server may call it from many threads."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None,
                 timeout: float = READ_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S,
                 check: bool = True):
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
        self._host = parts.hostname
        self._prefix = parts.path.rstrip("/")
        self.base_url = f"{parts.scheme}://{parts.netloc}{self._prefix}"
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.notices: list[str] = []
        self._dropped: set[str] = set()  # optional fields this server refused
        self._lock = threading.Lock()
        owned_by = None
        if check:
            model, owned_by = self._pick_model(model)
        elif not model:
            raise RemoteError("a model id is needed when the server is not asked for its models")
        self.model = model
        self.info = remote_info(self.base_url, model, owned_by)

    # -- HTTP --

    def _connect(self, read_timeout: float) -> http.client.HTTPConnection:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.connect_timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)
        conn.connect()
        conn.sock.settimeout(read_timeout)
        return conn

    def _headers(self, stream: bool = False) -> dict:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/event-stream" if stream else "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, method: str, path: str, payload: dict | None = None, stream: bool = False):
        """(connection, response); OSError / HTTPException for network problems."""
        conn = self._connect(self.timeout if stream else self.connect_timeout)
        try:
            headers = self._headers(stream)
            body = None
            if payload is not None:
                body = json.dumps(payload).encode("utf-8")
                headers["Content-Type"] = "application/json"
            conn.request(method, self._prefix + path, body=body, headers=headers)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _refused(self, status: int, message: str) -> str:
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 401 and not self.api_key:
            return f"{self.base_url} requires an API key ({detail}); pass --api-key"
        if status in (401, 403):
            return f"{self.base_url} refused the API key ({detail})"
        return ""

    # -- model selection (connect time) --

    def _pick_model(self, wanted: str | None) -> tuple[str, str | None]:
        where = f"{self.base_url}/models"
        try:
            conn, resp = self._request("GET", "/models")
            try:
                status, body = resp.status, resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            raise RemoteError(_network_problem(e, self.base_url, self.connect_timeout)) from None
        if status != 200:
            message = error_message(body)
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
                available = ", ".join(ids[:8]) + (" …" if len(ids) > 8 else "") if ids else "none"
                raise RemoteError(f"model {wanted!r} not found on {self.base_url} (available: {available})")
            chosen = next(m for m in models if m["id"] == wanted)
        else:
            if not models:
                raise RemoteError(f"{self.base_url} serves no models")
            chosen = models[0]
            if len(models) > 1:
                self.notices.append(f"{self.base_url} serves {len(models)} models; using {chosen['id']!r} (choose with --model)")
        owned_by = chosen.get("owned_by")
        return chosen["id"], owned_by if isinstance(owned_by, str) else None

    # -- the ChatModel interface --

    def chat(self, messages: Sequence[Any], sampling: SamplingParams | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Validate (raises ValidationError before any request), then stream the server's reply.
        Blocking: run it in a worker thread, like a local model's chat()."""
        clean = validate_messages(messages)
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
        cancel = cancel or threading.Event()
        if cancel.is_set():
            yield Done("cancelled", GenerationStats(0, 0, 0.0, 0.0))
            return
        body = self.payload(messages, sampling)
        for _attempt in range(len(OPTIONAL_FIELDS) + 1):
            try:
                conn, resp = self._request("POST", "/chat/completions", body, stream=True)
            except (OSError, http.client.HTTPException) as e:
                if cancel.is_set():
                    yield Done("cancelled", GenerationStats(0, 0, 0.0, time.perf_counter() - start))
                else:
                    yield ErrorEvent(_network_problem(e, self.base_url, self.connect_timeout))
                return
            if resp.status == 200:
                break
            try:
                message = error_message(resp.read())
            except (OSError, http.client.HTTPException):
                message = ""
            finally:
                conn.close()
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
        yield from self._read_stream(conn, resp, cancel, start)

    def _read_stream(self, conn, resp, cancel: threading.Event, start: float) -> Iterator[Event]:
        finished = threading.Event()

        def watch() -> None:  # closes the socket when the user stops, even mid-wait
            while not finished.is_set():
                if cancel.wait(CANCEL_POLL_S):
                    try:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                    except (OSError, AttributeError):
                        pass
                    return

        watcher = threading.Thread(target=watch, name="nanochat-remote-cancel", daemon=True)
        watcher.start()
        pieces: list[str] = []
        chunks = 0
        first: float | None = None
        held = ""  # a high surrogate waiting for its other half
        finish: str | None = None
        usage: dict = {}
        saw_done = False
        data_lines: list[bytes] = []

        def stats() -> GenerationStats:
            now = time.perf_counter()
            generated = usage.get("completion_tokens")
            if not isinstance(generated, int):
                generated = chunks
            prompt = usage.get("prompt_tokens")
            return GenerationStats(
                prompt_tokens=prompt if isinstance(prompt, int) else 0,
                generated_tokens=generated,
                ttft_s=(first if first is not None else now) - start,
                total_s=now - start,
            )

        def done(reason: str) -> Done:
            text = "".join(pieces) + (_join_surrogates(held) if held else "")
            parts = ({"type": "text", "text": text},) if text else ()
            return Done(reason, stats(), (), parts)

        try:
            content_type = resp.getheader("Content-Type", "") or ""
            if "text/event-stream" not in content_type and "json" in content_type:
                yield from self._whole_reply(resp, start)  # a server that ignored stream=true
                return
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException, ValueError) as e:
                    if cancel.is_set():
                        yield done("cancelled")
                    elif isinstance(e, (socket.timeout, TimeoutError)):
                        yield ErrorEvent(f"no data from {self.base_url} for {self.timeout:g} s; the reply was cut off")
                    else:
                        yield ErrorEvent(f"the connection to {self.base_url} broke during the reply ({_one_line(e) or type(e).__name__})")
                    return
                if cancel.is_set():
                    yield done("cancelled")
                    return
                if line and line.strip(b"\r\n"):
                    field, _, value = line.rstrip(b"\r\n").partition(b":")
                    if field == b"data":
                        data_lines.append(value[1:] if value.startswith(b" ") else value)
                    continue  # comments (":"), event:, id:, retry: are ignored
                if not data_lines:  # blank line without data, or the end of the body
                    if not line:
                        break
                    continue
                data = b"\n".join(data_lines).strip()
                data_lines = []
                if data == b"[DONE]":
                    saw_done = True
                    break
                try:
                    chunk = json.loads(data.decode("utf-8", errors="replace"))
                except ValueError:
                    yield ErrorEvent(f"{self.base_url} sent an unreadable stream chunk: {_one_line(data.decode('utf-8', 'replace'), 120)}")
                    return
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    yield ErrorEvent(error_message(json.dumps(chunk).encode()) or "the server reported an error")
                    return
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
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
                        if text:
                            pieces.append(text)
                            yield TextDelta(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                if not line:
                    break
            if cancel.is_set():
                yield done("cancelled")
            elif finish is None and not saw_done:
                yield ErrorEvent(f"{self.base_url} closed the stream before the reply was finished")
            else:
                if held:
                    yield TextDelta(_join_surrogates(held))
                    pieces.append(_join_surrogates(held))
                    held = ""
                yield done("length" if finish == "length" else "stop")
        finally:
            finished.set()
            conn.close()

    def _whole_reply(self, resp, start: float) -> Iterator[Event]:
        try:
            obj = json.loads(resp.read().decode("utf-8", errors="replace"))
            choice = obj["choices"][0]
            text = _join_surrogates(choice["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError, OSError, http.client.HTTPException):
            yield ErrorEvent(f"{self.base_url} sent a reply that is not an OpenAI chat completion")
            return
        now = time.perf_counter()
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        if text:
            yield TextDelta(text)
        stats = GenerationStats(
            prompt_tokens=usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else 0,
            generated_tokens=usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else (1 if text else 0),
            ttft_s=now - start, total_s=now - start,
        )
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
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
