"""Bounds on what client mode (`--server`, nanochat_core.remote) accepts from a server.

A server we connect to may be broken or hostile: it can send a line that never ends, an event
that never closes, a body of gigabytes, a reply far past `max_tokens`, or one byte every few
seconds so that a per-read socket timeout never fires. Every such case must end with one clear
line naming the bound, never with MemoryError, a traceback or a hang. docs/security.md
("Client mode (`--server`) bounds") lists each number below.

- `ClientLimits`: the caps (sizes) and deadlines (times) for one RemoteChatModel.
- `parse_server_timeout(spec)`: `--server-timeout first=120,idle=60,total=1800` (and
  $NANOCHAT_SERVER_TIMEOUT) into a ClientLimits.
- `ExchangeGuard`: one watcher thread per HTTP exchange that shuts the socket down when the user
  stops (Stop / Ctrl+C) or a deadline passes, even while a read is blocked mid-line. Deadlines are
  measured in complete events, not bytes, so trickling bytes never resets them.
- `read_capped(resp, cap)`: a whole response body, or CapExceeded past `cap` bytes.

Standard library only, like nanochat_core.remote.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from .errors import NanochatError

CANCEL_POLL_S = 0.05  # how often the watcher looks at the clock; Stop itself wakes it at once


def size_text(n: int) -> str:
    """Bytes as people read them: 64 KiB, 1 MiB, 16 MiB, 1000 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def seconds_text(s: float) -> str:
    return "none" if math.isinf(s) else f"{s:g}"


@dataclass(frozen=True)
class ClientLimits:
    """What one RemoteChatModel accepts from its server. Defaults are documented in
    docs/security.md; the deadlines are set with --server-timeout / $NANOCHAT_SERVER_TIMEOUT."""

    # Deadlines, in seconds (math.inf = none).
    connect_s: float = 10.0  # TCP connect (per address), a socket-level timeout
    first_s: float = 120.0  # request sent -> first complete event (or the whole /models answer)
    idle_s: float = 60.0  # between complete events, once the reply has started
    total_s: float = 1800.0  # request sent -> reply finished
    # Caps, in bytes.
    max_line_bytes: int = 1 << 20  # one line of the event stream
    max_event_bytes: int = 4 << 20  # one event: its data lines before the blank line that ends it
    max_body_bytes: int = 16 << 20  # a whole body: /models, a non-streamed reply
    max_error_bytes: int = 64 << 10  # an error body (only one line of it is ever shown)
    # The reply: tokens are not known client-side, so "past max_tokens" is bounded generously.
    chars_per_token: int = 32  # longer than any common tokenizer's tokens on average
    extra_chars: int = 1024
    events_per_token: int = 4  # role / usage / empty chunks besides one event per token
    extra_events: int = 64

    def reply_chars(self, max_tokens: int) -> int:
        """Reply text beyond this many characters means the server ignores max_tokens."""
        return max_tokens * self.chars_per_token + self.extra_chars

    def reply_events(self, max_tokens: int) -> int:
        """Stream events beyond this many (text or not) mean the same."""
        return max_tokens * self.events_per_token + self.extra_events


DEFAULT_LIMITS = ClientLimits()
TIMEOUT_KEYS = {"connect": "connect_s", "first": "first_s", "idle": "idle_s", "total": "total_s"}
TIMEOUT_FORMAT = "first=SECONDS,idle=SECONDS,total=SECONDS,connect=SECONDS (any of them; 'none' = no limit)"


class LimitsError(NanochatError):
    """A --server-timeout value that cannot be used; `str()` is one line."""


def parse_server_timeout(spec: str, base: ClientLimits = DEFAULT_LIMITS,
                         source: str = "--server-timeout") -> ClientLimits:
    """`first=120,idle=60,total=1800,connect=10` (any subset, any order) on top of `base`.
    Seconds are positive numbers; `none` means no limit (not for connect)."""
    changes: dict[str, float] = {}
    items = [item.strip() for item in (spec or "").split(",") if item.strip()]
    if not items:
        raise LimitsError(f"{source} needs {TIMEOUT_FORMAT}, e.g. first=300,total=3600")
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or key not in TIMEOUT_KEYS:
            raise LimitsError(f"{source}: {item!r} is not one of {TIMEOUT_FORMAT}")
        if value in ("none", "inf") and key != "connect":
            seconds = math.inf
        else:
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not (0 < seconds < math.inf):
                allowed = "a positive number of seconds" + ("" if key == "connect" else " or none")
                raise LimitsError(f"{source}: {key} must be {allowed}, not {value!r}")
        changes[TIMEOUT_KEYS[key]] = seconds
    return replace(base, **changes)


class CapExceeded(Exception):
    """A server sent more than a cap allows; `str()` is the one-line reason."""


def read_capped(resp: Any, cap: int) -> bytes:
    """The whole body of `resp` (an http.client.HTTPResponse), at most `cap` bytes; past that,
    CapExceeded without reading the rest (the caller closes the connection)."""
    body = resp.read(cap + 1)
    if len(body) > cap:
        raise CapExceeded(size_text(cap))
    return body


class ExchangeGuard:
    """Watches one HTTP exchange from a helper thread and shuts its socket down when `cancel` is
    set or a deadline passes, so a blocked read returns at once (within CANCEL_POLL_S for a
    deadline, at once for Stop). Afterwards `tripped` says why: "cancelled" or the one-line
    deadline message. The reader reports progress (`event()`) per complete event: bytes alone
    never move a deadline, so a server trickling bytes cannot keep a reply alive."""

    def __init__(self, limits: ClientLimits, cancel: threading.Event, *,
                 where: str, started: float | None = None) -> None:
        self._limits = limits
        self._cancel = cancel
        self._where = where
        self.started = time.monotonic() if started is None else started
        self._phase = "first"
        self._due = self.started + limits.first_s
        self._total_due = self.started + limits.total_s
        self._finished = threading.Event()
        self._sock: socket.socket | None = None
        self.tripped: str | None = None
        self._thread = threading.Thread(target=self._watch, name="nanochat-remote-guard", daemon=True)
        self._thread.start()

    # -- the reader's side --

    def attach(self, sock: socket.socket) -> None:
        """The connected TCP socket, before any TLS handshake. The guard keeps its own duplicate
        (shutting that down ends the connection for every descriptor of it): wrapping in TLS
        detaches the original object, and http.client drops `conn.sock` as soon as a response
        says `Connection: close` (it reads on through a file made from the socket)."""
        self._sock = sock.dup()
        if self.tripped:  # tripped while connecting
            self._shutdown(self._sock)

    def event(self) -> None:
        """A complete event arrived: from now on the idle deadline applies, restarted."""
        self._due = time.monotonic() + self._limits.idle_s
        self._phase = "idle"

    def whole_body(self) -> None:
        """A non-streamed reply is being read: only the total deadline applies to it."""
        self._due = math.inf
        self._phase = "total"

    def close(self) -> None:
        self._finished.set()
        if self._sock is not None:
            self._sock.close()

    # -- the watcher --

    def _message(self, phase: str) -> str:
        s = {"first": self._limits.first_s, "idle": self._limits.idle_s, "total": self._limits.total_s}[phase]
        how = f"raise it with --server-timeout {phase}=SECONDS"
        if phase == "first":
            return f"no answer from {self._where} within {s:g} s (the 'first' deadline; {how})"
        if phase == "idle":
            return (f"{self._where} sent no complete event for {s:g} s; the reply was cut off "
                    f"(the 'idle' deadline; {how})")
        return f"{self._where} did not finish within {s:g} s (the 'total' deadline; {how})"

    def _watch(self) -> None:
        while not self._finished.is_set():
            now = time.monotonic()
            due = min(self._due, self._total_due)
            if now >= due:
                phase = "total" if self._total_due <= self._due else self._phase
                self._trip(self._message(phase))
                return
            if self._cancel.wait(min(CANCEL_POLL_S, due - now)):
                self._trip("cancelled")
                return

    def _trip(self, why: str) -> None:
        if self._finished.is_set():
            return
        self.tripped = why
        self._shutdown(self._sock)  # before `attach` only the connect timeout runs

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            try:  # wakes a blocked read, TLS handshake and record reads included
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
