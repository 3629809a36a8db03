"""The server's log lines: one line per bad request, rate-limited; one short line per request.

aiohttp logs a malformed request (a bad request line, a header it cannot parse) as an error with
the whole traceback, and the exception text carries the client's bytes: 200 such requests made
6.5 MB of log. Here every such record becomes ONE line (`bad request from ADDR: <what>`, cut to
BAD_REQUEST_CHARS), and at most RATE_LINES of them are written per RATE_WINDOW_S seconds; the
next line after a quiet spell says how many were left out. --debug keeps the tracebacks (still
rate-limited). Every line is then made safe by nanochat_core.text.SafeLogFormatter, which the
console handler uses (server.setup_logging).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from nanochat_core.text import one_line

SERVER_LOGGER = "nanochat_tui.web.connections"  # aiohttp's connection-level records, through our filter
ACCESS_LOGGER = "nanochat_tui.web.access"
RATE_LINES = 10
RATE_WINDOW_S = 10.0
BAD_REQUEST_CHARS = 200
ACCESS_PATH_CHARS = 200


class RateLimit:
    """At most `lines` records per `window` seconds; counts the ones left out."""

    def __init__(self, lines: int = RATE_LINES, window: float = RATE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.lines, self.window, self.clock = lines, window, clock
        self._start = float("-inf")
        self._used = 0
        self.dropped = 0  # left out since the last line that was written
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        """(may write now, how many were left out before this one)."""
        with self._lock:
            now = self.clock()
            if now - self._start >= self.window:
                self._start, self._used = now, 0
            if self._used >= self.lines:
                self.dropped += 1
                return False, 0
            self._used += 1
            dropped, self.dropped = self.dropped, 0
            return True, dropped


class OneLineErrors(logging.Filter):
    """For aiohttp's server logger: errors become one rate-limited line each (module docstring)."""

    def __init__(self, debug: bool = False, limit: RateLimit | None = None):
        super().__init__()
        self.debug = debug
        self.limit = limit or RateLimit()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return self.debug
        allowed, dropped = self.limit.take()
        if not allowed:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if message.startswith("Error handling request from "):
            message = "bad request from " + message.removeprefix("Error handling request from ")
        if exc is not None:
            message += f": {type(exc).__name__}: {one_line(exc, BAD_REQUEST_CHARS)}"
        if dropped:
            message += f" ({dropped} more such lines left out in the last {self.limit.window:g} s)"
        record.msg, record.args = one_line(message, BAD_REQUEST_CHARS * 2), None
        if not self.debug:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class AccessLogger(AbstractAccessLogger):
    """`ADDR "METHOD PATH" STATUS BYTES SECONDSs`, the path cut to ACCESS_PATH_CHARS. A request
    aiohttp could not parse gets no access line: its one error line says it all."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.method == "UNKNOWN":  # aiohttp's placeholder for an unparseable request
            return
        path = one_line(request.rel_url.raw_path, ACCESS_PATH_CHARS)
        self.logger.info('%s "%s %s" %d %d %.3fs', request.remote, one_line(request.method, 20), path,
                         response.status, response.body_length, time)


def server_logger(debug: bool) -> logging.Logger:
    """The logger handed to aiohttp for connection-level records, with the one-line filter
    installed once per process (its level is set by server.setup_logging)."""
    logger = logging.getLogger(SERVER_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, OneLineErrors):
            existing.debug = debug
            return logger
    logger.addFilter(OneLineErrors(debug))
    return logger
