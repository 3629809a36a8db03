"""The OpenAI-compatible API of `nanochat-tui --web`: /v1/chat/completions and /v1/models.

Any OpenAI client (the official SDKs, curl, nanochat_core.remote.RemoteChatModel, tools that let you
set a base URL) can talk to a nanochat model through these routes. Only the wire format differs from
nanochat's own SSE endpoint (routes_nanochat.chat_completions); everything that decides behaviour
is shared: the rulebook (nanochat_core.chat) with its exact words, the server's sampling defaults
and `--system` prompt, the worker pool (generation never runs on the event loop), and the
package's middlewares (Host check, API key, CORS, body cap and timeout). On /v1 paths every error
has OpenAI's shape:

    {"error": {"message": "<one line>", "type": "invalid_request_error", "param": <field or null>,
               "code": null}}

Choices (docs/openai-api.md has the user's view):

- Model id: one per server, `nanochat-<model tag>` ("nanochat-d20"), or "nanochat-demo" for the
  bundled demo model. `model` may be left out; naming another model is 404 "model_not_found".
  The model card says exactly which checkpoint that is in an extension field, `nanochat`:
  ModelInfo.identity() (stage, tag, step, generation, demo, and the Hub repo/revision/commit
  for --hf) without its file path (where the server keeps its files is not the clients' business).
  A server is one model per process: to serve another, start another server.
- Calculator tool use is left out of `content`. The content is the reply's text, exactly what
  ChatModel.reply() returns and what the SSE endpoint's "token" events carry. Sent back as history,
  that text maps to the tokens the model really wrote (tool call included, see
  ChatModel.remember), so the next turn sees what the model saw and reuses the KV cache; an inline
  rendering of the tool output would come back as different text and break both. (The SSE
  endpoint streams tool_call / tool_result events for clients that want to show them.)
- `top_p`: the engine samples with temperature and top-k only, so only 1 (or null) is accepted;
  other values are 400 (use `top_k`, an extension field as in vLLM). `n`: only 1.
- `stop`: a string or a list of up to 4. Streamed text that could be the start of a stop sequence
  is held back until it is known not to be, so nothing at or past a stop sequence is ever sent.
  The reply is cut at the start of the stop sequence that is complete first (where generation
  would have stopped), the generation is cancelled, and finish_reason is "stop". Empty strings
  stop nothing and are ignored.
- `max_completion_tokens` (OpenAI's newer name) wins over `max_tokens`; either is checked by the
  rulebook, whose words say "max_tokens" (`param` names the field that was sent).
- Content given as a list of parts: text parts are joined with "\\n" (as vLLM does); image, audio
  and file parts are refused (this model reads text). Role "developer" (OpenAI's newer name for
  "system") is taken as "system".
- Refused with a 400 because they would change what the answer means and cannot be honoured:
  `logprobs: true`, a `response_format` other than text (no constrained decoding), a `tool_choice`
  / `function_call` that forces a call, `modalities` other than ["text"].
- Ignored, as OpenAI-compatible servers ignore what they do not implement: `tools` / `functions`
  (the model answers in text, like a model that chose not to call one), `presence_penalty`,
  `frequency_penalty`, `logit_bias` (its token ids belong to OpenAI's tokenizers), `user`,
  `metadata`, `store`, `service_tier`, `parallel_tool_calls`, `reasoning_effort`, and any field
  not named here.
- Engine errors: a stream gets `data: {"error": {...}}` then `data: [DONE]` (the OpenAI SDK raises
  APIError); a whole reply gets a 500 "server_error" with `x-should-retry: false`, since the same
  request would fail the same way. A server shutting down mid-reply is a 503 with Retry-After.
  A request the engine refuses (serving.Refused: a conversation longer than the model's context)
  is the client's error: a whole reply is a 400 invalid_request_error with param "messages", a
  stream's error chunk has type invalid_request_error.
- Usage: prompt_tokens, completion_tokens, total_tokens. `prompt_tokens_details.cached_tokens` is
  left out unless WebConfig.report_cached_tokens: the KV cache is shared by all clients, so that
  number would let one client test guesses of another client's prompt (docs/security.md).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Sequence

from aiohttp import web

from nanochat_core.chat import SamplingParams, ValidationError, validate_sampling
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, ErrorEvent, GenerationStats, TextDelta
from nanochat_core.model_info import ModelInfo
from nanochat_core.serving import Generation, Refused

from ..config import WebConfig
from .http import CONFIG_KEY, POOL_KEY, ApiError, read_json_object, sse, submit_generation
from .middlewares import preflight

log = logging.getLogger("nanochat_tui.web.openai")

MODEL_ID_KEY = web.AppKey("nanochat_openai_model_id", str)
CREATED_KEY = web.AppKey("nanochat_openai_created", int)
IDENTITY_KEY = web.AppKey("nanochat_openai_identity", dict)

OWNER = "nanochat-tui"
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MEDIA_PARTS = ("image_url", "image", "input_image", "input_audio", "audio", "file", "input_file", "video_url")
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
DONE_LINE = b"data: [DONE]\n\n"
SHUTTING_DOWN = "The generation was cancelled because the server is shutting down; try again shortly"


# ---------------------------------------------------------------- routes


def add_openai_routes(app: web.Application) -> None:
    """Register /v1/chat/completions, /v1/models and /v1/models/{model} on a create_app() app
    (its pool must be set). create_app registers the OPTIONS preflight of the two fixed paths
    with its other API paths (http.API_PATHS); the per-model path gets its own here."""
    info = app[POOL_KEY].workers[0].backend.info  # every worker: one model
    app[MODEL_ID_KEY] = model_id(info)
    app[IDENTITY_KEY] = served_identity(info)
    app[CREATED_KEY] = int(time.time())
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_route("OPTIONS", "/v1/models/{model}", preflight)


def model_id(info: ModelInfo) -> str:
    """The one model id a server answers to: "nanochat-d20", or "nanochat-demo" for the demo.
    In front of another server (--web --server) the upstream model's own id passes through."""
    if info.is_remote:
        return info.model_tag
    if info.is_demo:
        return "nanochat-demo"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", info.model_tag).strip("-.") or "model"
    return f"nanochat-{slug}"


def served_identity(info: ModelInfo) -> dict:
    """The `nanochat` field of the model card: which checkpoint answers, precisely (empty in
    front of another server, whose own id passes through)."""
    if info.is_remote:
        return {}
    identity = info.identity()
    identity.pop("path", None)  # the server's file system layout stays on the server
    return identity


def _model_card(app: web.Application) -> dict:
    card = {"id": app[MODEL_ID_KEY], "object": "model", "created": app[CREATED_KEY], "owned_by": OWNER}
    if app[IDENTITY_KEY]:
        card["nanochat"] = app[IDENTITY_KEY]
    return card


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model_card(request.app)]})


async def retrieve_model(request: web.Request) -> web.Response:
    check_model(request.match_info["model"], request.app[MODEL_ID_KEY])
    return web.json_response(_model_card(request.app))


# ---------------------------------------------------------------- the request


@dataclass(frozen=True)
class CompletionRequest:
    conversation: Conversation
    sampling: SamplingParams
    stream: bool
    include_usage: bool
    stops: tuple[str, ...]


def _bad(message: str, param: str | None) -> ApiError:
    return ApiError(400, message, param=param)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_request(body: Mapping[str, Any], config: WebConfig, served_model: str) -> CompletionRequest:
    """Check a /v1/chat/completions body; ApiError (400 / 404) with OpenAI's `param` otherwise."""
    check_model(body.get("model"), served_model)
    conversation = parse_messages(body.get("messages"), config.system)
    sampling = parse_sampling(body, config.sampling)
    check_single_choice(body.get("n"))
    check_top_p(body.get("top_p"))
    stops = parse_stop(body.get("stop"))
    stream = _flag(body.get("stream"), "stream")
    include_usage = parse_stream_options(body.get("stream_options"))
    refuse_what_cannot_be_honoured(body)
    return CompletionRequest(conversation, sampling, stream, include_usage, stops)


def check_model(requested: Any, served: str) -> None:
    if requested is None:
        return
    if not isinstance(requested, str):
        raise _bad("model must be a string", "model")
    if requested != served:
        raise ApiError(404, f"The model '{requested}' does not exist on this server; it serves '{served}'",
                       param="model", code="model_not_found")


def parse_messages(raw: Any, system: str | None) -> Conversation:
    """OpenAI's message forms, then the one Conversation (the rulebook's words, verbatim; the
    `--system` prompt exactly as the SSE endpoint adds it)."""
    try:
        return Conversation.from_messages(openai_messages(raw), default_system=system)
    except ValidationError as e:
        raise _bad(str(e), "messages") from None


def openai_messages(raw: Any) -> Any:
    """Map what OpenAI allows and the rulebook does not know: content as text parts, the
    "developer" role. Everything else goes to the rulebook unchanged, so its words judge it."""
    if not isinstance(raw, list):
        return raw
    return [_openai_message(i, m) for i, m in enumerate(raw)]


def _openai_message(i: int, message: Any) -> Any:
    if not isinstance(message, Mapping):
        return message
    out = dict(message)
    if out.get("role") == "developer":
        out["role"] = "system"
    content = out.get("content")
    if isinstance(content, list) and content:
        out["content"] = _join_text_parts(i, content)
    return out


def _join_text_parts(i: int, parts: list) -> str | list:
    kinds = [p.get("type") if isinstance(p, Mapping) else None for p in parts]
    media = next((k for k in kinds if k in MEDIA_PARTS), None)
    if media is not None:
        raise _bad(f"Message {i} has a content part of type '{media}', but this model reads text only: "
                   "send a string or text parts ({'type': 'text', 'text': ...})", "messages")
    if all(k == "text" and isinstance(p.get("text"), str) for k, p in zip(kinds, parts)):
        return "\n".join(p["text"] for p in parts)
    return parts  # nanochat's own parts (python / python_output), or a malformed part: the rulebook's call


def parse_sampling(body: Mapping[str, Any], base: SamplingParams) -> SamplingParams:
    """The rulebook's checks with the server's defaults for what is missing or null."""
    max_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    values = {"temperature": body.get("temperature"), "top_k": body.get("top_k"),
              "max_tokens": body.get(max_name), "seed": body.get("seed")}
    for name, value in values.items():  # one field at a time, so the error can name it
        try:
            validate_sampling(base, **{name: value})
        except ValidationError as e:
            raise _bad(str(e), max_name if name == "max_tokens" else name) from None
    return validate_sampling(base, **values)


def check_single_choice(n: Any) -> None:
    if n is None or (_is_number(n) and n == 1):
        return
    raise _bad("n must be 1: this server returns one choice per request (send several requests instead)", "n")


def check_top_p(top_p: Any) -> None:
    if top_p is None or (_is_number(top_p) and top_p == 1):
        return
    raise _bad("top_p is not supported: this server samples with temperature and top_k only, so top_p "
               "must be 1 or left out (use top_k to sample from the k most likely tokens)", "top_p")


def parse_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _bad(f"stop must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", "stop")
    if len(items) > MAX_STOP_SEQUENCES:
        raise _bad(f"stop lists {len(items)} sequences; at most {MAX_STOP_SEQUENCES} are allowed", "stop")
    return tuple(dict.fromkeys(s for s in items if s))  # "" would stop nothing; duplicates once


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{name} must be true or false", name)
    return value


def parse_stream_options(options: Any) -> bool:
    """Whether to send the usage chunk. Ignored without stream=true, as a lenient server does."""
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise _bad('stream_options must be an object like {"include_usage": true}', "stream_options")
    return _flag(options.get("include_usage"), "stream_options.include_usage")


def refuse_what_cannot_be_honoured(body: Mapping[str, Any]) -> None:
    """Fields whose request, silently ignored, would make the answer mean something else."""
    if body.get("logprobs") not in (None, False):
        raise _bad("logprobs are not supported by this server; leave logprobs out or set it to false", "logprobs")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        raise _bad("response_format is not supported: this model cannot be constrained to JSON; only "
                   "{'type': 'text'} is accepted", "response_format")
    for name in ("tool_choice", "function_call"):
        choice = body.get(name)
        if choice not in (None, "none", "auto"):
            raise _bad(f"{name} {json.dumps(choice)} forces a function call, which this model cannot make "
                       f"(it answers in text): leave {name} out or use \"auto\" or \"none\"", name)
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _bad('modalities: this model produces text only; leave modalities out or send ["text"]', "modalities")


# ---------------------------------------------------------------- stop sequences


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where `text` is cut: at the start of the stop sequence that is complete first (the
    earliest end; the longer one on a tie), as generation would have stopped there. None: no stop."""
    found = [(i + len(s), i) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    return min(found)[1] if found else None


class StopCutter:
    """Cuts streamed text at the first stop sequence. A tail that could be the start of a stop
    sequence is held back until the next text shows it is not, so nothing at or past a stop
    sequence is ever released, even when one arrives split over several deltas."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that is safe to send now. Sets `hit` at a stop sequence; later text is dropped."""
        if self.hit:
            return ""
        if not self.stops:
            return text
        buf = self.held + text
        cut = first_stop(buf, self.stops)
        if cut is not None:
            self.hit, self.held = True, ""
            return buf[:cut]
        keep = self._partial_tail(buf)
        self.held = buf[len(buf) - keep:]
        return buf[: len(buf) - keep]

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest tail of `buf` that is the start of some stop sequence."""
        for k in range(min(self.longest - 1, len(buf)), 0, -1):
            tail = buf[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0

    def flush(self) -> str:
        """The held-back text, once the reply has ended without completing a stop sequence."""
        out, self.held = self.held, ""
        return out


# ---------------------------------------------------------------- from events to OpenAI's pieces


@dataclass(frozen=True)
class Outcome:
    """How a reply ended: finish_reason "stop" | "length", or an error (then `status`)."""

    finish_reason: str | None
    usage: dict | None = None
    error: str | None = None
    status: int = 500
    param: str | None = None


def usage_of(stats: GenerationStats, report_cached: bool = False) -> dict:
    """OpenAI's usage object; the cached-token count only when asked (module docstring)."""
    usage = {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    }
    if report_cached:
        usage["prompt_tokens_details"] = {"cached_tokens": stats.cached_tokens}
    return usage


async def relay(generation: Generation, stops: Sequence[str],
                report_cached: bool = False) -> AsyncIterator[str | Outcome]:
    """The reply's text pieces (stop sequences applied), then exactly one Outcome. Tool calls
    and results are left out (see the module docstring)."""
    cutter = StopCutter(stops)
    async for event in generation:
        if isinstance(event, TextDelta):
            text = cutter.feed(event.text)
            if text:
                yield text
            if cutter.hit and not generation.cancelled:
                generation.cancel()  # stops within a step; its Done still comes, with the usage
        elif isinstance(event, Done):
            if cutter.hit:
                yield Outcome("stop", usage_of(event.stats, report_cached))
            elif event.reason == "cancelled":  # only the pool cancels behind our back: shutdown
                yield Outcome(None, error=SHUTTING_DOWN, status=503)
            else:
                tail = cutter.flush()
                if tail:
                    yield tail
                yield Outcome(event.reason, usage_of(event.stats, report_cached))
            return
        elif isinstance(event, Refused):  # the request's fault (e.g. longer than the context)
            yield Outcome(None, error=event.message, status=400, param="messages")
            return
        elif isinstance(event, ErrorEvent):
            yield Outcome(None, error=event.message)
            return
    yield Outcome(None, error="generation ended without a result")


@dataclass(frozen=True)
class Completion:
    """What every chunk (or the whole reply) of one request shares."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, model: str) -> "Completion":
        return cls(f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), model)

    def chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def usage_chunk(self, usage: dict) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage}

    def whole(self, text: str, outcome: Outcome) -> dict:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": outcome.finish_reason}],
                "usage": outcome.usage}


def error_chunk(message: str, status: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": param, "code": None}}


# ---------------------------------------------------------------- the handler


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    body = await read_json_object(request)
    req = parse_request(body, config, request.app[MODEL_ID_KEY])
    generation = submit_generation(request.app[POOL_KEY], req.conversation, req.sampling)
    head = Completion.new(request.app[MODEL_ID_KEY])
    if config.log_conversations:
        for m in req.conversation.request_messages():
            log.info("[%s]: %s", m.role.upper(), m.text)
    if req.stream:
        return await stream_reply(request, generation, req, head)
    return await whole_reply(request, generation, req, head)


async def stream_reply(request: web.Request, generation: Generation, req: CompletionRequest,
                       head: Completion) -> web.StreamResponse:
    """chat.completion.chunk events: the role, the text, the finish reason, the usage, [DONE]."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    outcome, reply = Outcome(None, error="disconnected"), []
    report_cached = request.app[CONFIG_KEY].report_cached_tokens

    def send(payload: dict) -> Any:
        if req.include_usage and "usage" not in payload and "error" not in payload:
            payload["usage"] = None  # OpenAI: every chunk but the last carries "usage": null
        return response.write(sse(payload))

    try:
        await response.prepare(request)
        async with generation:
            await send(head.chunk({"role": "assistant", "content": ""}))
            async with aclosing(relay(generation, req.stops, report_cached)) as items:
                async for item in items:
                    if isinstance(item, Outcome):
                        outcome = item
                    else:
                        reply.append(item)
                        await send(head.chunk({"content": item}))
            if outcome.error is not None:
                await send(error_chunk(outcome.error, outcome.status, outcome.param))
            else:
                await send(head.chunk({}, outcome.finish_reason))
                if req.include_usage:
                    await send(head.usage_chunk(outcome.usage))
            await response.write(DONE_LINE)
    except ConnectionError:  # the client went away: `async with` cancelled the generation
        outcome = Outcome(None, error="disconnected")
    finally:
        generation.cancel()  # no-op once finished; covers handler cancellation on disconnect
        _log_end(request, generation, outcome, reply)
    return response


async def whole_reply(request: web.Request, generation: Generation, req: CompletionRequest,
                      head: Completion) -> web.StreamResponse:
    """One chat.completion object once the reply is complete."""
    outcome, reply = Outcome(None, error="disconnected"), []
    report_cached = request.app[CONFIG_KEY].report_cached_tokens
    try:
        async with generation:
            async with aclosing(relay(generation, req.stops, report_cached)) as items:
                async for item in items:
                    if isinstance(item, Outcome):
                        outcome = item
                    elif _client_gone(request):  # nothing is written until the end: look instead
                        return web.Response(status=499, reason="Client Closed Request")
                    else:
                        reply.append(item)
    finally:
        generation.cancel()
        _log_end(request, generation, outcome, reply)
    if outcome.error is not None:
        headers = {"Retry-After": "5"} if outcome.status == 503 else {"x-should-retry": "false"}
        raise ApiError(outcome.status, outcome.error, headers, param=outcome.param)
    return web.json_response(head.whole("".join(reply), outcome))


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _log_end(request: web.Request, generation: Generation, outcome: Outcome, reply: list[str]) -> None:
    worker = generation.worker
    where = f"gpu {worker.gpu_id}" if worker else "never started"
    if request.app[CONFIG_KEY].log_conversations:
        log.info("[ASSISTANT] (%s): %s", where.upper(), "".join(reply))
    result = outcome.finish_reason or f"error: {outcome.error}"
    log.info("openai request %d: %s, %s", generation.id, where, result)
