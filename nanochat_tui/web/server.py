"""Serving: the runner every listening server is built with (timeouts, one-line logs, no version
banner), the console lines, the serve loop, and `nanochat-tui --web` itself (run_web)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from typing import Callable

from aiohttp import web, web_response

from nanochat_core.text import SafeLogFormatter

from ..config import WebConfig
from ..console import say
from .app import create_app
from .hosts import HostPolicy, machine_addresses
from .logs import ACCESS_LOGGER, AccessLogger, server_logger
from .middlewares import SERVER_NAME
from .workers import StartError, check_config, close_backends, load_workers

SHUTDOWN_TIMEOUT_S = 5  # open handlers get this long to finish once generations are cancelled
LINGERING_S = 2.0  # after an answer, read at most this long of a body the handler did not want


def make_runner(app: web.Application, config: WebConfig, *, access_log: bool = True) -> web.AppRunner:
    """The AppRunner for `app` with this server's connection rules:

    - headers must arrive within `config.header_timeout` seconds of the connection opening or of
      the previous answer (aiohttp's keep-alive timer runs from there and closes a connection
      that has not produced a whole request: a client trickling header bytes is cut off; an
      idle keep-alive connection closes after the same time). Bodies have their own limit
      (http.read_json_object, `config.body_timeout`).
    - aiohttp's connection-level errors go through logs.OneLineErrors (one rate-limited line
      per bad request); access lines through logs.AccessLogger.
    - no version banner: aiohttp writes its own answer to a request it cannot parse before any
      application hook runs, with the Server header from this module constant, so that constant
      is set here (routed answers get the same name from middlewares.response_headers).
    """
    web_response.SERVER_SOFTWARE = SERVER_NAME
    return web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=config.header_timeout, lingering_time=LINGERING_S,
        logger=server_logger(config.debug), access_log_class=AccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER) if access_log else None,
    )


def ready_lines(config: WebConfig, port: int) -> list[str]:
    host = config.host
    lines = []
    s = config.sampling
    lines.append(f"Sampling defaults: temperature {s.temperature:g}, top-k {s.top_k}, max tokens {s.max_tokens}")
    lines.append("Conversation logging: " + ("ON (--log-conversations): messages are printed here"
                                             if config.log_conversations else "off (--log-conversations to turn on)"))
    lines.append("Cross-origin API calls: " + (f"allowed from {config.cors_origin}" if config.cors_origin
                                               else "same origin only (--cors-origin to allow one)"))
    lines.append("Host names answered: " + HostPolicy(host, config.allowed_hosts).describe()
                 + ("" if config.allowed_hosts else " (--allowed-host to add one)"))
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
                stop: asyncio.Event | None = None, ready: Callable[[int], None] | None = None) -> None:
    """Bind, print where to go, serve until SIGINT/SIGTERM (or `stop`), then shut down cleanly.
    `ready(port)` is called once the socket listens and the console lines are out."""
    runner = make_runner(app, config)
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
    if ready is not None:
        ready(port)
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


def setup_logging(debug: bool) -> None:
    """Log records to stdout, each one safe line (SafeLogFormatter): the server's own loggers
    (requests, access lines, bad requests through logs.OneLineErrors), and aiohttp's warnings,
    which would otherwise reach stderr raw through logging's last-resort handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(SafeLogFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    levels = {"nanochat_tui.web": logging.INFO, "aiohttp": logging.WARNING}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else level)


def run_web(config: WebConfig) -> int:
    """`nanochat-tui --web`: load one model per worker, serve until Ctrl+C. Returns the exit code;
    a reason it cannot start raises (StartError / CheckpointError: cli.main prints one line)."""
    check_config(config)  # before minutes of loading
    workers = load_workers(config, say)
    setup_logging(config.debug)
    app = create_app(config, workers, close_backends=True)
    try:
        asyncio.run(serve(app, config, say))
    except StartError:
        close_backends(workers)
        raise
    except KeyboardInterrupt:  # a second Ctrl+C during shutdown
        pass
    return 0
