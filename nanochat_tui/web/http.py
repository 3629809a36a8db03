"""HTTP helpers shared by every route: the app's keys, both error shapes, SSE framing, reading a
JSON body within its size and time limits, and handing a request to the worker pool.

Two error shapes, chosen by path: nanochat's `{"detail": "<one line>"}` (its scripts and page
read that), and OpenAI's `{"error": {"message", "type", "param", "code"}}` under /v1/ (its SDKs
turn that into BadRequestError, AuthenticationError & co.).
"""

from __future__ import annotations

import asyncio
import json
from typing import Sequence

from aiohttp import web

from nanochat_core.chat import Message, SamplingParams, ValidationError
from nanochat_core.serving import Generation, PoolBusy, PoolClosed, WorkerPool

from ..config import WebConfig

CONFIG_KEY = web.AppKey("nanochat_config", WebConfig)
POOL_KEY = web.AppKey("nanochat_pool", WorkerPool)

OPENAI_PREFIX = "/v1/"  # everything under it is API (key, CORS) and answers errors in OpenAI's shape
# nanochat's API paths (key, CORS, JSON errors); everything under OPENAI_PREFIX is API too.
API_PATHS = ("/chat/completions", "/settings", "/stats", "/v1/chat/completions", "/v1/models")
# Readable from another origin with --cors-origin but needing no key: nanochat's page polls it.
PUBLIC_CORS_PATHS = ("/health",)


class ApiError(Exception):
    """An HTTP error with a one-line message; `param` and `code` fill OpenAI's error fields on /v1.
    `close`: end the connection after the answer (a body that never arrived must not linger)."""

    def __init__(self, status: int, detail: str, headers: dict | None = None, *,
                 param: str | None = None, code: str | None = None, close: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
        self.param, self.code, self.close = param, code, close


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def is_api_path(path: str) -> bool:
    return path in API_PATHS or is_openai_path(path)


def json_error(status: int, detail: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


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


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object, or ApiError: 413 over the size cap, 408 when the body
    has not arrived within the body timeout (a client trickling bytes must not hold a handler
    forever), 400 with a clear detail for anything that is not a JSON object."""
    config = request.app[CONFIG_KEY]
    cap = config.max_body_bytes
    too_large = f"Request body is too large: at most {cap} bytes allowed"
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413, too_large)
    try:
        async with asyncio.timeout(config.body_timeout):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, too_large) from None
    except TimeoutError:
        raise ApiError(408, f"Request body did not arrive within {config.body_timeout:g} seconds",
                       close=True) from None
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


def submit_generation(pool: WorkerPool, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
    """Start or queue a validated request; a full queue or a closing pool is ApiError 503. A
    conversation over the context budget is a 400 now, before it waits in the queue (every
    worker serves the same model, so the first one's check holds for all)."""
    check = getattr(pool.workers[0].backend, "check_context", None) if pool.workers else None
    if check is not None:
        try:
            check(messages)
        except ValidationError as e:
            raise ApiError(400, str(e), param="messages") from None
    try:
        return pool.submit(messages, sampling)
    except PoolBusy as e:
        raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from None
    except PoolClosed as e:
        raise ApiError(503, f"Server unavailable: {e}", {"Retry-After": "5"}) from None
