"""`nanochat-tui --web`: nanochat's chat page and streaming API, and an OpenAI-compatible API,
served by aiohttp.

The package, one job per module (imports only go down this list, so there is no cycle):

    assets.py           where the browser files are (the checkout's web/, or the wheel's _web/)
    http.py             the app's keys, both error shapes ({"detail"} and OpenAI's), SSE framing,
                        reading a JSON body (size cap, time limit), handing requests to the pool
    hosts.py            which Host names the server answers to (the DNS-rebinding guard)
    logs.py             one rate-limited line per bad request; the access-log line
    middlewares.py      errors as JSON, Host check, origin and API key; security headers, CORS
    routes_nanochat.py  the page (aiohttp-jinja2), /chat/completions (SSE), /health, /stats, /settings
    routes_openai.py    /v1/chat/completions, /v1/models (docs/openai-api.md)
    workers.py          one model per device, StartError and the start-time checks
    app.py              create_app(): routes, middlewares, template, the pool's lifetime
    server.py           the runner (timeouts, logs), console lines, serve(), run_web()
    threaded.py         ThreadedServer: serve() on a thread of its own (benchmark, tests)

docs/security.md ("Web server") lists every rule a request passes, with its numbers.
"""

from __future__ import annotations

from .app import create_app, page_config
from .hosts import HostPolicy, machine_addresses
from .server import make_runner, ready_lines, run_web, serve
from .threaded import ThreadedServer
from .workers import StartError, load_workers, model_worker, plan_devices

__all__ = [
    "HostPolicy", "StartError", "ThreadedServer", "create_app", "load_workers", "machine_addresses",
    "make_runner", "model_worker", "page_config", "plan_devices", "ready_lines", "run_web", "serve",
]
