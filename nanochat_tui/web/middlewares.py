"""What every request passes through, in order: errors as JSON, the Host check (DNS rebinding),
the origin check and the API key; and the headers every response carries (security headers, a
Server header without versions, CORS for the one origin --cors-origin allows).
docs/security.md "Web server" has the user's view of each rule.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from nanochat_core.text import one_line

from .hosts import HostPolicy
from .http import CONFIG_KEY, PUBLIC_CORS_PATHS, ApiError, error_response, is_api_path
from .logs import RateLimit

log = logging.getLogger("nanochat_tui.web")

HOSTS_KEY = web.AppKey("nanochat_hosts", HostPolicy)

# No inline script or style anywhere. Trusted Types make every HTML sink (innerHTML & co.) throw
# unless given a value from the page's one policy, "nanochat-html" (the page's markdown renderer
# signs only HTML its sanitizer has cleaned), so no text from a message becomes markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types nanochat-html"
)
# The page uses none of these browser features: no page (or anything injected into one) may.
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "autoplay", "camera", "display-capture", "encrypted-media", "fullscreen",
    "geolocation", "gyroscope", "hid", "idle-detection", "magnetometer", "microphone", "midi",
    "payment", "publickey-credentials-get", "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
))
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # A window this page opens (or that opens it) gets no handle on it, and no other site may
    # embed its responses (no-cors loads); CORS reads allowed by --cors-origin are unaffected.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
}
SERVER_NAME = "nanochat-tui"  # the Server header: no Python or aiohttp version for scanners
CROSS_ORIGIN = "Cross-origin requests are not allowed (start the server with --cors-origin to allow one origin)"
WRONG_KEY = "Missing or wrong API key: send 'Authorization: Bearer <key>' (on the chat page: /key <key>)"

_unexpected = RateLimit()  # a bug a client can trigger must not flood the log with tracebacks


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """API errors are JSON ({"detail": ...}, or OpenAI's shape under /v1/); nothing unexpected
    becomes a traceback page."""
    try:
        return await handler(request)
    except ApiError as e:
        response = error_response(request, e.status, e.detail, e.headers, param=e.param, code=e.code)
        if e.close:
            response.force_close()
        return response
    except web.HTTPException as e:
        if is_api_path(request.path) or e.status >= 500:
            return error_response(request, e.status, e.reason,
                                  {k: v for k, v in e.headers.items() if k in ("Allow",)})
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        allowed, dropped = _unexpected.take()
        if allowed:
            more = f" ({dropped} more left out)" if dropped else ""
            log.exception("unexpected error in %s %s%s", request.method, one_line(request.path, 200), more)
        return error_response(request, 500, "Internal server error")


@web.middleware
async def host_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Refuse a Host this server is not known by (hosts.py): a DNS-rebinding page's requests."""
    host = request.headers.get("Host")
    if request.app[HOSTS_KEY].allows(host):
        return await handler(request)
    shown = one_line(host, 80)
    detail = (f"Host '{shown}' is not a name this server answers to (a guard against DNS rebinding): "
              f"use localhost or its IP address, or start it with --allowed-host NAME")
    if is_api_path(request.path):
        raise ApiError(403, detail)
    return web.Response(status=403, text=detail + "\n", content_type="text/plain")


def cors_allowed(allowed: str | None, origin: str | None) -> bool:
    if not allowed or not origin:
        return False
    return allowed == "*" or origin.rstrip("/").lower() == allowed.rstrip("/").lower()


def same_origin(request: web.Request, origin: str) -> bool:
    """Origin names this server as the Host did (the Host itself was checked before)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == (request.headers.get("Host") or "").lower()


def key_matches(header: str, key: str) -> bool:
    """`Authorization: Bearer <key>`, compared in constant time. Header bytes that are not UTF-8
    (aiohttp keeps them as surrogate escapes) are compared as the bytes they were: a mismatch."""
    scheme, _, token = header.strip().partition(" ")
    given = token.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, key.encode("utf-8"))


@web.middleware
async def guard_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Same origin by default (a page elsewhere cannot drive this server from a visitor's
    browser), and the optional API key."""
    if not is_api_path(request.path):
        return await handler(request)
    config = request.app[CONFIG_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request, origin) and not cors_allowed(config.cors_origin, origin):
        raise ApiError(403, CROSS_ORIGIN)
    if request.method == "OPTIONS":
        return await handler(request)
    if config.api_key is not None and not key_matches(request.headers.get("Authorization", ""), config.api_key):
        raise ApiError(401, WRONG_KEY, {"WWW-Authenticate": "Bearer"}, code="invalid_api_key")
    return await handler(request)


async def response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: security headers, Server, static caching, CORS."""
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER_NAME
    if request.path.startswith("/static/"):
        headers["Cache-Control"] = "public, max-age=3600"  # URLs carry ?v=<content hash>
    config = request.app[CONFIG_KEY]
    origin = request.headers.get("Origin")
    cors_path = is_api_path(request.path) or request.path in PUBLIC_CORS_PATHS
    if cors_path and cors_allowed(config.cors_origin, origin):
        headers["Access-Control-Allow-Origin"] = origin if config.cors_origin != "*" else "*"
        headers["Access-Control-Expose-Headers"] = "Retry-After"
        headers.add("Vary", "Origin")


async def preflight(request: web.Request) -> web.Response:
    """OPTIONS for the API paths: allowed only from the --cors-origin origin."""
    if not cors_allowed(request.app[CONFIG_KEY].cors_origin, request.headers.get("Origin")):
        return error_response(request, 403, CROSS_ORIGIN)
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Max-Age": "600",
    })
