"""`nanochat-tui --web`: nanochat's chat page and streaming API, served by aiohttp.

Protocol (kept compatible with nanochat's scripts/chat_web.py, so its clients keep working):

    POST /chat/completions  {"messages": [{"role", "content"}...], "temperature"?, "top_k"?,
                             "max_tokens"?, "seed"?}
      -> text/event-stream:  data: {"token": "<text>", "gpu": <worker id>}   (repeated)
                             data: {"done": true}
      Extra events old clients ignore (they carry no "token"/"done" key):
                             data: {"tool_call": {"expression"}, "gpu"}
                             data: {"tool_result": {"expression", "result"}, "gpu"}
                             data: {"finish": "stop"|"length"|"cancelled", "stats": {...}, "gpu"}
                             data: {"error": "<one line>", "gpu"}            (then done)
      400 {"detail": "<the rulebook's words>"} · 413 body too large · 503 + Retry-After when the
      queue is full · 401 without the --api-key · 403 from another origin (unless --cors-origin)
    GET /health   {"status": "ok", "ready", "num_gpus", "available_workers"}
    GET /stats    {"total_workers", "available_workers", "busy_workers", "workers": [{"gpu_id", "device"}]}
    POST /settings {"temperature"?: "0.7", "top_k"?: "40", "max_tokens"?: "256"} -> parsed values
                  or 400 with the rulebook's words (the page's /temperature and /topk commands)

OpenAI-compatible API (nanochat_tui/openai_api.py; docs/openai-api.md), for OpenAI SDKs and tools:
    POST /v1/chat/completions  OpenAI's request; "stream": true -> chat.completion.chunk events
                               then data: [DONE]; otherwise one chat.completion object
    GET  /v1/models            {"object": "list", "data": [{"id": "nanochat-<tag>", ...}]}
    GET  /v1/models/{id}       that one model, or 404 model_not_found
      Same rulebook, defaults, pool, API key and CORS rules; errors under /v1 are OpenAI's
      {"error": {"message", "type", "param", "code"}} instead of {"detail"}.

Validation is the core rulebook (nanochat_core.chat); generation runs on engine threads through
nanochat_core.serving's worker pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from nanochat_core.chat import (
    Message,
    SamplingParams,
    ValidationError,
    parse_max_tokens,
    parse_temperature,
    parse_top_k,
    validate_messages,
    validate_sampling,
)
from nanochat_core.errors import NanochatError
from nanochat_core.events import Done, ErrorEvent, TextDelta, ToolCall, ToolResult
from nanochat_core.text import SafeLogFormatter
from nanochat_core.serving import Generation, PoolBusy, PoolClosed, Worker, WorkerPool

from .config import WebConfig
from .console import say
from .web_assets import static_dir, static_version, templates_dir

log = logging.getLogger("nanochat_tui.web")


# No inline script or style anywhere. Trusted Types make every HTML sink (innerHTML & co.) throw
# unless given a value from the page's one policy, "nanochat-html", which only signs HTML while
# DOMPurify sanitizes it (web/static/js/markdown.js), so no text from a message becomes markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types nanochat-html"
)
API_PATHS = ("/chat/completions", "/settings", "/stats", "/v1/chat/completions", "/v1/models")
OPENAI_PREFIX = "/v1/"  # everything under it is API (key, CORS) and answers errors in OpenAI's shape

CONFIG_KEY = web.AppKey("nanochat_config", WebConfig)
POOL_KEY = web.AppKey("nanochat_pool", WorkerPool)
PAGE_KEY = web.AppKey("nanochat_page", str)


class ApiError(Exception):
    """An HTTP error with a one-line message; `param` and `code` fill OpenAI's error fields on /v1."""

    def __init__(self, status: int, detail: str, headers: dict | None = None, *,
                 param: str | None = None, code: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
        self.param, self.code = param, code


def json_error(status: int, detail: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def openai_error(status: int, message: str, headers: dict | None = None, *,
                 param: str | None = None, code: str | None = None) -> web.Response:
    """OpenAI's error body, which its SDKs turn into BadRequestError, AuthenticationError & co."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}},
                             status=status, headers=headers)


def error_response(request: web.Request, status: int, message: str, headers: dict | None = None, *,
                   param: str | None = None, code: str | None = None) -> web.Response:
    """An error in the shape the path's clients read: OpenAI's under /v1/, nanochat's {"detail"} elsewhere."""
    if is_openai_path(request.path):
        return openai_error(status, message, headers, param=param, code=code)
    return json_error(status, message, headers)


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


# ---------------------------------------------------------------- the application


def create_app(
    config: WebConfig | None = None,
    workers: Sequence[Worker | Any] | None = None,
    *,
    pool: WorkerPool | None = None,
    close_backends: bool = False,
) -> web.Application:
    """The aiohttp application. Give `workers` (Worker objects, or backends with `.info` and
    `.chat()`, one worker each) or a ready `pool`. Tests inject fakes or real ChatModels here.
    `close_backends`: call each backend's close() (if any) when the app shuts down."""
    config = config or WebConfig()
    if pool is None:
        if not workers:
            raise ValueError("create_app needs workers or a pool")
        pool = WorkerPool([_as_worker(i, w) for i, w in enumerate(workers)], queue_size=config.queue_size)
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[_errors_middleware, _guard_middleware],
    )
    app[CONFIG_KEY] = config
    app[POOL_KEY] = pool
    app[PAGE_KEY] = _render_page(config, pool)
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/logo.svg", favicon)
    app.router.add_static("/static", static_dir(), follow_symlinks=False, show_index=False)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/settings", settings)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    from .openai_api import add_openai_routes  # imported here: it builds on this module's helpers

    add_openai_routes(app)
    for path in API_PATHS:
        app.router.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(_response_headers)

    async def shutdown(app: web.Application) -> None:
        await app[POOL_KEY].close()
        if close_backends:
            for worker in app[POOL_KEY].workers:
                close = getattr(worker.backend, "close", None)
                if close is not None:
                    close()

    app.on_shutdown.append(shutdown)
    return app


def _as_worker(i: int, w: Any) -> Worker:
    if isinstance(w, Worker):
        return w
    info = getattr(w, "info", None)
    return Worker(gpu_id=i, device=getattr(info, "device", "cpu"), backend=w, slots=1)


def page_config(config: WebConfig, info: Any) -> dict:
    """What the page needs from the server, as one JSON object in the page
    (`<script type="application/json" id="nanochat-config">`): the rulebook's limits and ranges,
    this server's defaults, the command list (one registry: nanochat_tui/commands.py) and the
    model. The page reads these; it never retypes them."""
    from nanochat_core import chat

    from .commands import page_commands

    sampling = config.sampling
    return {
        "limits": {
            "max_messages": chat.MAX_MESSAGES,
            "max_message_chars": chat.MAX_MESSAGE_CHARS,
            "max_total_chars": chat.MAX_TOTAL_CHARS,
            "temperature": [chat.MIN_TEMPERATURE, chat.MAX_TEMPERATURE],
            "top_k": [chat.MIN_TOP_K, chat.MAX_TOP_K],
            "max_tokens": [chat.MIN_MAX_TOKENS, chat.MAX_MAX_TOKENS],
        },
        "defaults": {
            "temperature": sampling.temperature,
            "top_k": sampling.top_k if sampling.top_k is not None else 0,
            "max_tokens": sampling.max_tokens,
            "system": config.system,
        },
        "commands": page_commands(),
        "api_key_required": config.api_key is not None,
        "model": {"name": info.short_name, "description": info.describe(), "is_demo": bool(info.is_demo)},
    }


def _render_page(config: WebConfig, pool: WorkerPool) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    info = pool.workers[0].backend.info
    sampling = config.sampling
    return env.get_template("index.html").render(
        page_config=page_config(config, info),
        model_name=info.short_name,
        model_description=info.describe(),
        is_demo=info.is_demo,
        temperature=sampling.temperature,
        top_k=sampling.top_k if sampling.top_k is not None else 0,
        max_tokens=sampling.max_tokens,
        api_key_required=config.api_key is not None,
        version=static_version(),
    )


# ---------------------------------------------------------------- middlewares and headers


def _is_api(request: web.Request) -> bool:
    return request.path in API_PATHS or is_openai_path(request.path)


def _cors_allowed(config: WebConfig, origin: str | None) -> bool:
    allowed = config.cors_origin
    if not allowed or not origin:
        return False
    return allowed == "*" or origin.rstrip("/").lower() == allowed.rstrip("/").lower()


def _same_origin(request: web.Request, origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == (request.host or "").lower()


@web.middleware
async def _errors_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """API errors are JSON ({"detail": ...}, or OpenAI's shape under /v1/); nothing unexpected
    becomes a traceback page."""
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(request, e.status, e.detail, e.headers, param=e.param, code=e.code)
    except web.HTTPException as e:
        if _is_api(request) or e.status >= 500:
            return error_response(request, e.status, e.reason,
                                  {k: v for k, v in e.headers.items() if k in ("Allow",)})
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(request, 500, "Internal server error")


@web.middleware
async def _guard_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Same origin by default (a page elsewhere cannot drive this server from a visitor's
    browser), and the optional API key."""
    if not _is_api(request):
        return await handler(request)
    config = request.app[CONFIG_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(request, origin) and not _cors_allowed(config, origin):
        raise ApiError(403, "Cross-origin requests are not allowed (start the server with --cors-origin to allow one origin)")
    if request.method == "OPTIONS":
        return await handler(request)
    if config.api_key is not None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>' "
                                "(on the chat page: /key <key>)", {"WWW-Authenticate": "Bearer"},
                           code="invalid_api_key")
    return await handler(request)


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/static/"):
        headers["Cache-Control"] = "public, max-age=3600"  # URLs carry ?v=<content hash>
    config = request.app[CONFIG_KEY]
    origin = request.headers.get("Origin")
    if _is_api(request) and _cors_allowed(config, origin):
        headers["Access-Control-Allow-Origin"] = origin if config.cors_origin != "*" else "*"
        headers["Access-Control-Expose-Headers"] = "Retry-After"
        headers.add("Vary", "Origin")


async def preflight(request: web.Request) -> web.Response:
    if not _cors_allowed(request.app[CONFIG_KEY], request.headers.get("Origin")):
        return error_response(request, 403, "Cross-origin requests are not allowed (start the server with --cors-origin to allow one origin)")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Max-Age": "600",
    })


# ---------------------------------------------------------------- page and health


async def index(request: web.Request) -> web.Response:
    return web.Response(text=request.app[PAGE_KEY], content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(static_dir() / "logo.svg", headers={"Content-Type": "image/svg+xml"})


async def health(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    return web.json_response({
        "status": "ok",
        "ready": not pool.closed and pool.total_workers > 0,
        "num_gpus": pool.total_workers,
        "available_workers": pool.available_workers,
    })


async def stats(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    data = pool.stats()
    for entry, worker in zip(data["workers"], pool.workers):
        entry["model"] = worker.backend.info.short_name
    return web.json_response(data)


# ---------------------------------------------------------------- the API


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object, or ApiError 400/413 with a clear detail."""
    cap = request.app[CONFIG_KEY].max_body_bytes
    too_large = f"Request body is too large: at most {cap} bytes allowed"
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413, too_large)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, too_large) from None
    if not raw.strip():
        raise ApiError(400, 'Request body is empty: send a JSON object like {"messages": [...]}')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "Request body must be JSON encoded as UTF-8") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"Request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "Request body is not valid JSON (nested too deeply or malformed)") from None
    if not isinstance(body, dict):
        raise ApiError(400, 'Request body must be a JSON object like {"messages": [...]}')
    return body


async def settings(request: web.Request) -> web.Response:
    """Check settings typed on the page (/temperature 0.7) with the rulebook's parsers and words."""
    body = await read_json_object(request)
    parsers = {"temperature": parse_temperature, "top_k": parse_top_k, "max_tokens": parse_max_tokens}
    out: dict[str, Any] = {}
    try:
        for key, parse in parsers.items():
            value = body.get(key)
            if value is None:
                continue
            out[key] = parse(value.strip() if isinstance(value, str) else json.dumps(value))
    except ValidationError as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(out)


def _stats_payload(done: Done) -> dict:
    s = done.stats
    return {
        "prompt_tokens": s.prompt_tokens,
        "cached_tokens": s.cached_tokens,
        "generated_tokens": s.generated_tokens,
        "ttft_ms": round(s.ttft_s * 1000, 1),
        "total_ms": round(s.total_s * 1000, 1),
        "tokens_per_second": round(s.decode_tok_s, 1),
        "summary": s.summary(),
    }


def event_payloads(event: Any, gpu: int) -> list[dict]:
    """SSE payloads for one core event (the final {"done": true} is written by the caller)."""
    if isinstance(event, TextDelta):
        return [{"token": event.text, "gpu": gpu}] if event.text else []
    if isinstance(event, ToolCall):
        return [{"tool_call": {"expression": event.expression}, "gpu": gpu}]
    if isinstance(event, ToolResult):
        return [{"tool_result": {"expression": event.expression, "result": event.result}, "gpu": gpu}]
    if isinstance(event, Done):
        payload = {"finish": event.reason, "stats": _stats_payload(event), "gpu": gpu}
        if any(p["type"] != "text" for p in event.parts):
            payload["parts"] = [dict(p) for p in event.parts]  # send these back to keep tool use
        return [payload]
    if isinstance(event, ErrorEvent):
        return [{"error": event.message, "gpu": gpu}]
    return []


def submit_generation(pool: WorkerPool, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
    """Start or queue a validated request; a full queue or a closing pool is ApiError 503."""
    try:
        return pool.submit(messages, sampling)
    except PoolBusy as e:
        raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from None
    except PoolClosed as e:
        raise ApiError(503, f"Server unavailable: {e}", {"Retry-After": "5"}) from None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    pool = request.app[POOL_KEY]
    body = await read_json_object(request)
    try:
        messages = validate_messages(body.get("messages"))
        sampling = validate_sampling(
            config.sampling,
            temperature=body.get("temperature"),
            top_k=body.get("top_k"),
            max_tokens=body.get("max_tokens"),
            seed=body.get("seed"),
        )
        if config.system and messages[0].role != "system":
            messages = validate_messages([Message("system", config.system), *messages])
    except ValidationError as e:
        raise ApiError(400, str(e)) from None

    generation = submit_generation(pool, messages, sampling)
    if config.log_conversations:
        for m in messages:
            log.info("[%s]: %s", m.role.upper(), m.text)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    outcome, reply = "disconnected", []
    try:
        await response.prepare(request)
        async with generation:
            async for event in generation:
                if isinstance(event, TextDelta):
                    reply.append(event.text)
                for payload in event_payloads(event, generation.worker.gpu_id if generation.worker else 0):
                    await response.write(sse(payload))
                if isinstance(event, (Done, ErrorEvent)):
                    outcome = event.reason if isinstance(event, Done) else f"error: {event.message}"
            await response.write(sse({"done": True}))
    except ConnectionError:  # the client went away: `async with` cancelled the generation
        outcome = "disconnected"
    finally:
        generation.cancel()  # no-op once finished; covers handler cancellation on disconnect
        worker = generation.worker
        where = f"gpu {worker.gpu_id}" if worker else "never started"
        if config.log_conversations:
            log.info("[ASSISTANT] (%s): %s", where.upper(), "".join(reply))
        log.info("chat request %d: %s, %s", generation.id, where, outcome)
    return response


# ---------------------------------------------------------------- the command


class StartError(NanochatError):
    """A one-line reason the server cannot start (exit 2)."""


def plan_devices(config: WebConfig) -> list[str]:
    """One device per worker, or StartError (more GPUs than present, -n > 1 without CUDA)."""
    import torch

    from nanochat_core.api import autodetect_device

    kind = config.model.device_type or autodetect_device()
    n = config.num_gpus
    if n < 1:
        raise StartError("--num-gpus must be at least 1")
    if kind == "cuda":
        present = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if present == 0:
            raise StartError("--device-type cuda was requested but CUDA is not available here")
        if n > present:
            raise StartError(f"--num-gpus {n} asks for more GPUs than this machine has ({present})")
        return [f"cuda:{i}" for i in range(n)]
    if n > 1:
        raise StartError(f"--num-gpus {n} needs CUDA GPUs; this machine runs on {kind}, which serves with one worker (use -n 1)")
    return [kind]


def model_worker(gpu_id: int, model: Any, slots: int) -> Worker:
    """A worker for a loaded ChatModel: with more than one slot its requests share decode steps
    (a BatchedChatModel); with one, the model itself runs one stream at a time."""
    backend = model.batched(slots) if slots > 1 else model
    return Worker(gpu_id=gpu_id, device=str(model.info.device), backend=backend, slots=slots)


def load_workers(config: WebConfig, say: Callable[[str], None] = say) -> list[Worker]:
    """Load one model per device, printing nanochat's console lines. With --server, one worker
    that forwards up to `config.max_batch` requests at once to the OpenAI-compatible server."""
    if config.model.server is not None:
        say("Initializing worker pool with 1 remote server...")
        backend = config.model.load(progress=lambda line: say(f"  {line}"))
        for notice in backend.notices:
            say(f"  Notice: {notice}")
        say("All 1 workers initialized!")
        say(f"Model: {backend.info.describe()}")
        return [Worker(gpu_id=0, device=backend.info.server, backend=backend, slots=config.max_batch)]
    devices = plan_devices(config)
    say(f"Initializing worker pool with {len(devices)} GPUs...")
    workers = []
    for i, device in enumerate(devices):
        say(f"Loading model on GPU {i}..." if device.startswith("cuda") else f"Loading model on {device}...")
        said: list[str] = []

        def progress(line: str) -> None:
            said.append(line)
            say(f"  {line}")

        model = config.model.load(progress=progress, device=device)
        for notice in model.notices:
            if notice not in said:  # the demo-model notice is also a progress line
                say(f"  Notice: {notice}")
        workers.append(model_worker(i, model, config.max_batch))
    say(f"All {len(workers)} workers initialized!")
    say(f"Model: {workers[0].backend.info.describe()}")
    return workers


def machine_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (best effort, no traffic sent)."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect: picks the outgoing interface only
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    out = []
    for ip in found:
        if not ip.startswith("127.") and ip != "0.0.0.0" and ip not in out:
            out.append(ip)
    return out


def ready_lines(config: WebConfig, port: int) -> list[str]:
    host = config.host
    lines = []
    s = config.sampling
    lines.append(f"Sampling defaults: temperature {s.temperature:g}, top-k {s.top_k}, max tokens {s.max_tokens}")
    lines.append("Conversation logging: " + ("ON (--log-conversations): messages are printed here"
                                             if config.log_conversations else "off (--log-conversations to turn on)"))
    lines.append("Cross-origin API calls: " + (f"allowed from {config.cors_origin}" if config.cors_origin
                                               else "same origin only (--cors-origin to allow one)"))
    if config.api_key is not None:
        lines.append("API key: required (Authorization: Bearer ...; on the page: /key <key>)")
    lines.append("Server ready. Open the chat at:")
    if host in ("0.0.0.0", "", "::"):
        lines.append(f"  http://localhost:{port}")
        lines += [f"  http://{ip}:{port}" for ip in machine_addresses()]
        lines.append(f"Warning: listening on {host or '0.0.0.0'}, so the server is reachable from the network: "
                     f"anyone who can reach this machine on port {port} can use it. Use --host 127.0.0.1 "
                     "to keep it local" + ("" if config.api_key else ", or --api-key to require a key") + ".")
    else:
        shown = f"[{host}]" if ":" in host else host
        lines.append(f"  http://{shown}:{port}")
    lines += [
        "Endpoints:",
        "  GET  /                     chat page",
        "  POST /chat/completions     streaming chat API (server-sent events)",
        "  POST /v1/chat/completions  OpenAI-compatible chat API (base URL for OpenAI clients: /v1)",
        "  GET  /v1/models            OpenAI-compatible model list",
        "  GET  /health               health check",
        "  GET  /stats                worker pool statistics",
        "Press Ctrl+C to stop.",
    ]
    return lines


async def serve(app: web.Application, config: WebConfig, say: Callable[[str], None] = say,
                stop: asyncio.Event | None = None) -> None:
    """Bind, print where to go, serve until SIGINT/SIGTERM (or `stop`), then shut down cleanly."""
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5,
                           access_log=logging.getLogger("aiohttp.access"),
                           access_log_format='%a "%r" %s %b %Tfs')
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except OSError as e:
        await runner.cleanup()
        reason = os.strerror(e.errno).lower() if e.errno else str(e)
        hint = " (pick another port with -p/--port)" if e.errno == errno.EADDRINUSE else ""
        raise StartError(f"cannot listen on {config.host}:{config.port}: {reason}{hint}") from None
    port = next((a[1] for a in runner.addresses if isinstance(a, tuple)), config.port)
    for line in ready_lines(config, port):
        say(line)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
            pass
    try:
        await stop.wait()
    finally:
        say("Shutting down...")
        await runner.cleanup()


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(SafeLogFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("nanochat_tui.web", "aiohttp.access", "aiohttp.server"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)


def run_web(config: WebConfig) -> int:
    """`nanochat-tui --web`: load one model per worker, serve until Ctrl+C. Returns the exit code;
    a reason it cannot start raises (StartError / CheckpointError: cli.main prints one line)."""
    workers = load_workers(config, say)
    _setup_logging(config.debug)
    app = create_app(config, workers, close_backends=True)
    try:
        asyncio.run(serve(app, config, say))
    except StartError:
        for worker in workers:
            close = getattr(worker.backend, "close", None)
            if close is not None:
                close()
        raise
    except KeyboardInterrupt:  # a second Ctrl+C during shutdown
        pass
    return 0
