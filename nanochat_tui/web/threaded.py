"""Run an aiohttp application on a thread of its own: the one helper for code that is not on an
event loop, or that wants the server on a loop apart from its client's.

The serving benchmark (nanochat_tui/bench_serving.py) and the tests (browser tests drive
Playwright's synchronous API; benchmark tests stand up a stand-in server) use it. It runs
`server.serve()`, the code `nanochat-tui --web` runs (same runner: timeouts, one-line logs, no
version banner), so what they exercise is the real server:

    config = WebConfig(host="127.0.0.1", port=0)
    with ThreadedServer(create_app(config, workers), config) as server:
        urllib.request.urlopen(server.url + "/health")
        server.lines    # the console lines serve() printed ("Server ready. ...")
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from aiohttp import web

from ..config import WebConfig

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ThreadedServer:
    """`app` served on `config.host`:`config.port` (default 127.0.0.1 and a free port) by an event
    loop in a daemon thread. Use as a context manager, or start() / close()."""

    def __init__(self, app: web.Application, config: WebConfig | None = None, *,
                 say: Callable[[str], None] | None = None):
        self.app = app
        self.config = config or WebConfig(host="127.0.0.1", port=0)
        self.lines: list[str] = []
        self.port = 0
        self._say = say
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://HOST:PORT`, no trailing slash (a wildcard bind is reached on 127.0.0.1)."""
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> "ThreadedServer":
        """Start serving; returns once the socket listens. Raises what kept it from starting
        (StartError for a port in use), or TimeoutError."""
        self._thread = threading.Thread(target=self._run, name="nanochat-web-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the server did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise self._error
        return self

    def close(self) -> None:
        """Stop serving (open streams end, the pool closes) and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError(f"the server thread did not stop within {STOP_TIMEOUT_S:g} s")

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self._say is not None:
            self._say(line)

    def _listening(self, port: int) -> None:
        self.port = port

    def _run(self) -> None:
        from .server import serve  # server.py imports the app factory; this module stays light

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self.app, self.config, self._line, self._stop,
                        ready=lambda port: (self._listening(port), self._ready.set()))

        try:
            loop.run_until_complete(main())
        except BaseException as e:  # reported by start() when it happened before listening
            self._error = e
        finally:
            self._ready.set()
            loop.close()
