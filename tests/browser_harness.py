"""Shared pieces of the browser tests (tests/test_browser*.py): Debian's Chromium driven by
Playwright (docs: /work/shared/docs/testing.md "A real browser"), the real server on a thread,
a proxy that can cut connections, and small helpers. Importing this module skips the test
module when no chromium binary exists (CI installs it, and must run them)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from nanochat_core.chat import SamplingParams
from nanochat_tui import web as webmod
from nanochat_tui.web import ThreadedServer
from nanochat_tui.config import WebConfig

from conftest import wait_for  # noqa: F401  (re-exported to the browser tests)

CHROMIUM = os.environ.get("NANOCHAT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser tests, but there is no chromium at {CHROMIUM}")
    pytest.skip(f"no chromium binary ({CHROMIUM}); install Debian's chromium to run the browser tests",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parent.parent
AXE = REPO / "tests" / "vendor" / "axe-core" / "axe.min.js"

CONFIG = WebConfig(host="127.0.0.1", port=0,
                   sampling=SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None))


def start_server(backends, config: WebConfig = CONFIG) -> ThreadedServer:
    """The one place the browser tests start a server: the shared ThreadedServer helper runs
    the code `nanochat-tui --web` runs (webmod.serve) on its own thread, with real sockets."""
    return ThreadedServer(webmod.create_app(config, backends), config).start()


class CuttableProxy:
    """A TCP proxy in front of a server: `cut()` drops every open connection at once, which a
    page sees exactly as the server going away mid-reply. New connections still go through."""

    def __init__(self, port: int):
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self._lock:
            doomed, self._open = self._open, []
        for s in doomed:
            try:  # shutdown wakes the pump blocked in recv(); then the socket really closes
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self._listener.close()
        self.cut()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Console:
    """JavaScript errors a page logs; every test asserts there were none it did not expect."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def unexpected(self, allowed: tuple[str, ...] = ()) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


def open_page(browser, url, *, allowed_console: tuple[str, ...] = (), **context_options):
    """A fresh browser context (its own IndexedDB and storage) on `url`. Returns (page, finish):
    call finish() at the end; it checks the console and closes the context."""
    options = {"viewport": {"width": 1100, "height": 800}, **context_options}
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    console = Console(page)
    page.console_log = console
    page.goto(url)
    expect(page.locator("#chat-input")).to_be_focused()

    def finish(extra_allowed: tuple[str, ...] = ()):
        try:
            assert console.unexpected(allowed_console + extra_allowed) == [], console.errors
        finally:
            context.close()

    return page, finish


def make_server_fixture(model_fixture: str = "fake"):
    """A module-scoped `server` fixture: the real web app on a thread, serving that module's
    fake model."""

    @pytest.fixture(scope="module")
    def server(request):
        s = start_server([request.getfixturevalue(model_fixture)])
        yield s
        s.close()

    return server


def make_page_fixture(server_fixture: str = "server"):
    """A `page` fixture for a module: a new context per test on that module's server.
    A test may set `request.node.allowed_console` to tolerate expected console errors."""

    @pytest.fixture
    def page(browser, request):
        server = request.getfixturevalue(server_fixture)
        pg, finish = open_page(browser, server.url)
        yield pg
        finish(getattr(request.node, "allowed_console", ()))

    return page


# Chromium logs every 4xx/5xx fetch as a console error; tests about those errors allow them.
HTTP_ERRORS = ("the server responded with a status of",)


def send(page, text):
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def wait_idle(page, timeout=15_000):
    expect(page.locator("#stop-button")).to_be_hidden(timeout=timeout)
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def conversation(page):
    """[role, text] for each message on screen (the branch shown)."""
    return page.eval_on_selector_all(
        ".message.user, .message.assistant",
        "els => els.map(e => [e.classList.contains('user') ? 'user' : 'assistant',"
        " e.querySelector('.message-content').textContent.trim()])")


def calls_after(fake, n, timeout=5.0):
    """The backend calls made after the first `n` (waits for at least one)."""
    wait_for(lambda: len(fake.calls) > n, "a backend call", timeout=timeout)
    return fake.calls[n:]


def sent(call):
    """(role, text) of each message a backend call received."""
    return [(m.role, m.text) for m in call[0]]


def run_axe(page) -> list[dict]:
    """axe-core (vendored under tests/vendor) on the page; the serious and critical violations.
    The page's CSP forbids injected scripts, so the context must be created with bypass_csp."""
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
                           " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                           " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})); }")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def vendored_files() -> list[tuple[str, str]]:
    """(path, sha256) for each vendored file listed in web/static/vendor/MANIFEST.txt."""
    rows = []
    for line in (REPO / "web" / "static" / "vendor" / "MANIFEST.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split()
        rows.append((parts[3], parts[4]))
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def page_config(page) -> dict:
    return json.loads(page.locator("#nanochat-config").text_content())


def stored(page) -> list[dict]:
    """The conversation records the page keeps in IndexedDB (call once the page has saved one:
    opening a database that does not exist yet would create it without its store)."""
    return page.evaluate("""() => new Promise((resolve, reject) => {
        const open = indexedDB.open('nanochat');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
            const db = open.result;
            if (!db.objectStoreNames.contains('conversations')) { db.close(); resolve([]); return; }
            const all = db.transaction('conversations').objectStore('conversations').getAll();
            all.onsuccess = () => { db.close(); resolve(all.result); };
            all.onerror = () => reject(all.error);
        };
    })""")
