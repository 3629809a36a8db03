"""The application factory: routes, middlewares, the page's template, and the worker pool's
lifetime (an aiohttp cleanup context: the pool, and the backends if asked, close with the app)."""

from __future__ import annotations

from typing import Any, AsyncIterator, Sequence

import aiohttp_jinja2
import jinja2
from aiohttp import web

from nanochat_core.serving import Worker, WorkerPool

from ..config import WebConfig
from .assets import static_version, templates_dir
from .hosts import HostPolicy
from .http import API_PATHS, CONFIG_KEY, POOL_KEY, PUBLIC_CORS_PATHS
from .middlewares import (
    HOSTS_KEY,
    errors_middleware,
    guard_middleware,
    host_middleware,
    preflight,
    response_headers,
)
from .routes_nanochat import PAGE_CONTEXT_KEY, add_nanochat_routes
from .routes_openai import add_openai_routes
from .workers import as_worker, check_config
from .workers import close_backends as close_all_backends


def create_app(
    config: WebConfig | None = None,
    workers: Sequence[Worker | Any] | None = None,
    *,
    pool: WorkerPool | None = None,
    close_backends: bool = False,
) -> web.Application:
    """The aiohttp application. Give `workers` (Worker objects, or backends with `.info` and
    `.chat()`, one worker each) or a ready `pool`. Tests inject fakes or real ChatModels here.
    `close_backends`: call each backend's close() (if any) when the app shuts down.
    Raises StartError for a configuration that must not serve (an empty API key, a bad
    --allowed-host)."""
    config = config or WebConfig()
    check_config(config)
    if pool is None:
        if not workers:
            raise ValueError("create_app needs workers or a pool")
        pool = WorkerPool([as_worker(i, w) for i, w in enumerate(workers)], queue_size=config.queue_size)
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[errors_middleware, host_middleware, guard_middleware],
    )
    app[CONFIG_KEY] = config
    app[POOL_KEY] = pool
    app[HOSTS_KEY] = HostPolicy(config.host, config.allowed_hosts)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True,
                         undefined=jinja2.StrictUndefined, default_helpers=False)
    app[PAGE_CONTEXT_KEY] = page_context(config, pool.workers[0].backend.info)
    add_nanochat_routes(app)
    add_openai_routes(app)
    for path in (*API_PATHS, *PUBLIC_CORS_PATHS):
        app.router.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(response_headers)
    app.on_shutdown.append(_end_generations)
    app.cleanup_ctx.append(_pool_lifetime(close_backends))
    return app


async def _end_generations(app: web.Application) -> None:
    """At shutdown, before aiohttp waits for open handlers: cancel every generation, so each
    open stream ends within one decode step instead of running on until the shutdown timeout."""
    await app[POOL_KEY].close()


def _pool_lifetime(close: bool):
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        yield
        pool = app[POOL_KEY]
        await pool.close()  # again, harmless: covers an app cleaned up without a shutdown
        if close:
            close_all_backends(pool.workers)

    return lifetime


def page_config(config: WebConfig, info: Any) -> dict:
    """What the page needs from the server, as one JSON object in the page
    (`<script type="application/json" id="nanochat-config">`): the rulebook's limits and ranges,
    this server's defaults, the command list (one registry: nanochat_tui/commands.py) and the
    model. The page reads these; it never retypes them."""
    from nanochat_core import chat

    from ..commands import page_commands

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


def page_context(config: WebConfig, info: Any) -> dict:
    """The variables web/templates/index.html is rendered with (aiohttp-jinja2, autoescaped)."""
    sampling = config.sampling
    return {
        "page_config": page_config(config, info),
        "model_name": info.short_name,
        "model_description": info.describe(),
        "is_demo": info.is_demo,
        "temperature": sampling.temperature,
        "top_k": sampling.top_k if sampling.top_k is not None else 0,
        "max_tokens": sampling.max_tokens,
        "api_key_required": config.api_key is not None,
        "version": static_version(),
    }
