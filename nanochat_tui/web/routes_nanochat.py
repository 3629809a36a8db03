"""nanochat's own routes: the chat page, its streaming API, /health, /stats, /settings.

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
      400 {"detail": "<the rulebook's words>"} · 408 body not sent in time · 413 body too large ·
      503 + Retry-After when the queue is full · 401 without the --api-key · 403 from another
      origin (unless --cors-origin) or under a Host name the server does not answer to
    GET /health   {"status": "ok", "ready", "num_gpus", "available_workers"}
    GET /stats    {"total_workers", "available_workers", "busy_workers", "workers": [{"gpu_id", "device"}]}
    POST /settings {"temperature"?: "0.7", "top_k"?: "40", "max_tokens"?: "256"} -> parsed values
                  or 400 with the rulebook's words (the page's /temperature and /topk commands)

Validation is the core rulebook (nanochat_core.chat); generation runs on engine threads through
nanochat_core.serving's worker pool, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from nanochat_core.chat import (
    ValidationError,
    parse_max_tokens,
    parse_temperature,
    parse_top_k,
    validate_sampling,
)
from nanochat_core.conversation import Conversation
from nanochat_core.events import Done, ErrorEvent, TextDelta, ToolCall, ToolResult

from ..config import WebConfig
from .assets import static_dir
from .http import CONFIG_KEY, POOL_KEY, ApiError, read_json_object, sse, submit_generation

log = logging.getLogger("nanochat_tui.web")

PAGE_CONTEXT_KEY = web.AppKey("nanochat_page_context", dict)  # what index.html is rendered with


def add_nanochat_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/logo.svg", favicon)
    app.router.add_static("/static", static_dir(), follow_symlinks=False, show_index=False)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/settings", settings)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)


# ---------------------------------------------------------------- page, health, stats


async def index(request: web.Request) -> web.Response:
    response = aiohttp_jinja2.render_template("index.html", request, request.app[PAGE_CONTEXT_KEY])
    response.headers["Cache-Control"] = "no-cache"
    return response


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(static_dir() / "logo.svg", headers={"Content-Type": "image/svg+xml"})


def cluster_backend(pool: Any) -> Any:
    """The backend of a front door to a cluster (nanochat_tui/ray_serve/frontdoor.py), which
    answers /health and /stats from the cluster's view of its replicas; None for local workers."""
    backend = pool.workers[0].backend if len(pool.workers) == 1 else None
    return backend if callable(getattr(backend, "cluster_health", None)) else None


async def health(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    cluster = cluster_backend(pool)
    if cluster is not None:
        return web.json_response(await cluster.cluster_health(pool))
    return web.json_response({
        "status": "ok",
        "ready": not pool.closed and pool.total_workers > 0,
        "num_gpus": pool.total_workers,
        "available_workers": pool.available_workers,
    })


async def stats(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    cluster = cluster_backend(pool)
    if cluster is not None:
        return web.json_response(await cluster.cluster_stats(pool))
    data = pool.stats()
    for entry, worker in zip(data["workers"], pool.workers):
        entry["model"] = worker.backend.info.short_name
    return web.json_response(data)


# ---------------------------------------------------------------- settings and chat


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


def stats_payload(done: Done, config: WebConfig) -> dict:
    """The finish event's stats. `cached_tokens` only with config.report_cached_tokens: the KV
    cache is shared by every client, so the number would tell one client how much of its prompt
    another client had sent before (docs/security.md)."""
    s = done.stats
    payload = {
        "prompt_tokens": s.prompt_tokens,
        "generated_tokens": s.generated_tokens,
        "ttft_ms": round(s.ttft_s * 1000, 1),
        "total_ms": round(s.total_s * 1000, 1),
        "tokens_per_second": round(s.decode_tok_s, 1),
        "summary": s.summary(),
    }
    if config.report_cached_tokens:
        payload["cached_tokens"] = s.cached_tokens
    return payload


def event_payloads(event: Any, gpu: int, config: WebConfig) -> list[dict]:
    """SSE payloads for one core event (the final {"done": true} is written by the caller)."""
    if isinstance(event, TextDelta):
        return [{"token": event.text, "gpu": gpu}] if event.text else []
    if isinstance(event, ToolCall):
        return [{"tool_call": {"expression": event.expression}, "gpu": gpu}]
    if isinstance(event, ToolResult):
        return [{"tool_result": {"expression": event.expression, "result": event.result}, "gpu": gpu}]
    if isinstance(event, Done):
        payload = {"finish": event.reason, "stats": stats_payload(event, config), "gpu": gpu}
        if any(p["type"] != "text" for p in event.parts):
            payload["parts"] = [dict(p) for p in event.parts]  # send these back to keep tool use
        return [payload]
    if isinstance(event, ErrorEvent):
        return [{"error": event.message, "gpu": gpu}]
    return []


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    pool = request.app[POOL_KEY]
    body = await read_json_object(request)
    try:
        # One Conversation (nanochat_core.conversation): the client's messages, the --system
        # default when they bring none, replies this server wrote mapped back to their exact ids.
        conversation = Conversation.from_messages(body.get("messages"), default_system=config.system)
        sampling = validate_sampling(
            config.sampling,
            temperature=body.get("temperature"),
            top_k=body.get("top_k"),
            max_tokens=body.get("max_tokens"),
            seed=body.get("seed"),
        )
    except ValidationError as e:
        raise ApiError(400, str(e)) from None

    generation = submit_generation(pool, conversation, sampling)
    if config.log_conversations:
        for m in conversation.request_messages():
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
                gpu = generation.worker.gpu_id if generation.worker else 0
                for payload in event_payloads(event, gpu, config):
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
