"""The chat page in a real browser: Debian's Chromium driven by Playwright (testing.md), against
the real server (nanochat_tui.web.serve on a thread) with a scripted backend, and once with a
real checkpoint. Skipped only when no chromium binary exists (CI installs it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
import urllib.request
from dataclasses import replace

import pytest

from nanochat_core.chat import SamplingParams
from nanochat_tui import web as webmod
from nanochat_tui.config import WebConfig
from web_fakes import FakeModel

CHROMIUM = os.environ.get("NANOCHAT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser tests, but there is no chromium at {CHROMIUM}")
    pytest.skip(f"no chromium binary ({CHROMIUM}); install Debian's chromium to run the browser tests",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GEN = "gen5-smear-backout"


class Server:
    """webmod.serve() (the code `nanochat-tui --web` runs) on its own thread and event loop."""

    def __init__(self, app, config: WebConfig):
        self.lines: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(app, config), daemon=True)
        self._thread.start()
        deadline = time.time() + 30
        while not any("Press Ctrl+C" in line for line in self.lines):
            assert self._thread.is_alive() and time.time() < deadline, self.lines
            time.sleep(0.01)
        port = re.search(r"http://127\.0\.0\.1:(\d+)", "\n".join(self.lines)).group(1)
        self.url = f"http://127.0.0.1:{port}"

    def _run(self, app, config):
        asyncio.set_event_loop(self._loop)

        async def main():
            self._stop = asyncio.Event()
            await webmod.serve(app, config, self.lines.append, self._stop)

        self._loop.run_until_complete(main())

    def close(self):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive()


def reply(messages, sampling):
    text = messages[-1].text
    if text.startswith("slow"):
        return "word " * 400
    return f"You said: {text}"


def token_delay(messages):
    return 0.05 if messages[-1].text.startswith("slow") else 0.03


CONFIG = WebConfig(host="127.0.0.1", port=0, sampling=SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None))


@pytest.fixture(scope="module")
def fake():
    return FakeModel(reply=reply, token_delay=token_delay, first_delay=0.3)


@pytest.fixture(scope="module")
def server(fake):
    s = Server(webmod.create_app(CONFIG, [fake]), CONFIG)
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Console:
    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def unexpected(self, allowed: tuple[str, ...] = ()) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    console = Console(pg)
    pg.console_log = console
    pg.goto(server.url)
    expect(pg.locator("#chat-input")).to_be_focused()
    yield pg
    allowed = getattr(request.node, "allowed_console", ())
    # No JavaScript errors in the console, in any test.
    assert console.unexpected(allowed) == [], console.errors
    context.close()


def send(page, text):
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def wait_idle(page):
    expect(page.locator("#stop-button")).to_be_hidden(timeout=15_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def conversation(page):
    return page.eval_on_selector_all(
        ".message.user, .message.assistant",
        "els => els.map(e => [e.classList.contains('user') ? 'user' : 'assistant',"
        " e.querySelector('.message-content').textContent])")


def calls_after(fake, n, timeout=5.0):
    deadline = time.time() + timeout
    while len(fake.calls) <= n and time.time() < deadline:
        time.sleep(0.01)
    return fake.calls[n:]


# ------------------------------------------------------------------------------------------


def test_send_and_watch_the_reply_stream_in(page, fake):
    send(page, "hello streaming world")
    expect(page.locator(".message.user .message-content")).to_have_text("hello streaming world")
    expect(page.locator(".typing-indicator")).to_be_visible()  # ··· before the first token
    reply_el = page.locator(".message.assistant .message-content")
    seen = set()
    deadline = time.time() + 10
    while time.time() < deadline:
        text = reply_el.text_content()
        seen.add(text)
        if text == "You said: hello streaming world":
            break
        time.sleep(0.01)
    partial = {t for t in seen if t and t != "You said: hello streaming world"}
    assert partial, f"the reply never showed partial text: {seen}"
    wait_idle(page)
    expect(page.locator(".typing-indicator")).to_have_count(0)
    assert conversation(page) == [["user", "hello streaming world"], ["assistant", "You said: hello streaming world"]]
    expect(page.locator(".message-stats")).to_contain_text("tokens")
    # Look: user bubble on the right in light gray, the reply on the left as plain text.
    user_box = page.locator(".message.user .message-content").bounding_box()
    reply_box = reply_el.bounding_box()
    assert user_box["x"] > reply_box["x"] + 100
    bg = page.eval_on_selector(".message.user .message-content", "e => getComputedStyle(e).backgroundColor")
    assert bg == "rgb(240, 240, 240)"
    expect(page.locator("#chat-input")).to_have_value("")


def test_enter_sends_and_shift_enter_adds_a_line(page, fake):
    page.click("#chat-input")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(page.locator("#chat-input")).to_have_value("line one\nline two")
    expect(page.locator(".message")).to_have_count(0)
    n = len(fake.calls)
    page.keyboard.press("Enter")
    expect(page.locator(".message.user .message-content")).to_have_text("line one\nline two")
    wait_idle(page)
    sent = calls_after(fake, n)
    assert [m.text for m in sent[0][0]] == ["line one\nline two"]


def test_send_button_is_enabled_only_with_text(page):
    send_button = page.get_by_role("button", name="Send")
    expect(send_button).to_be_disabled()
    page.fill("#chat-input", "x")
    expect(send_button).to_be_enabled()
    page.fill("#chat-input", "   \n  ")
    expect(send_button).to_be_disabled()
    page.fill("#chat-input", "")
    expect(send_button).to_be_disabled()
    page.fill("#chat-input", "go")
    send_button.click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()  # while streaming
    expect(send_button).to_be_hidden()
    wait_idle(page)
    expect(send_button).to_be_disabled()  # the input is empty again
    colors = page.evaluate("""() => {
        const b = document.getElementById('send-button');
        return getComputedStyle(b).backgroundColor; }""")
    assert colors == "rgb(209, 213, 219)"  # disabled gray
    page.fill("#chat-input", "hover me")
    normal = page.eval_on_selector("#send-button", "e => getComputedStyle(e).backgroundColor")
    page.hover("#send-button")
    page.wait_for_timeout(250)  # the colour transition
    hovered = page.eval_on_selector("#send-button", "e => getComputedStyle(e).backgroundColor")
    assert normal != hovered and hovered == "rgb(0, 0, 0)"  # darker on hover


def test_textarea_grows_to_200px_then_scrolls(page):
    box = page.locator("#chat-input")
    one = box.bounding_box()["height"]
    page.fill("#chat-input", "a\nb\nc")
    three = box.bounding_box()["height"]
    assert one < three < 200
    page.fill("#chat-input", "\n".join(f"line {i}" for i in range(30)))
    assert box.bounding_box()["height"] == pytest.approx(200, abs=0.5)
    overflow = page.eval_on_selector("#chat-input", "e => [getComputedStyle(e).overflowY, e.scrollHeight > e.clientHeight]")
    assert overflow == ["auto", True]
    page.fill("#chat-input", "")
    assert box.bounding_box()["height"] == pytest.approx(one, abs=0.5)
    # Blue focus border around the input.
    border = page.eval_on_selector("#input-wrapper", "e => getComputedStyle(e).borderTopColor")
    assert border == "rgb(13, 110, 253)"


@pytest.fixture
def allow_http_errors(request):
    # Chromium logs every 4xx/5xx fetch as a console error; those are the point of the test.
    request.node.allowed_console = ("the server responded with a status of 400",)


def is_red(css_color: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return r > 150 and g < 80 and b < 80


def test_error_banner_shows_the_servers_words_in_red_and_keeps_the_text(page, fake, allow_http_errors):
    too_long = "z" * 8001
    n = len(fake.calls)
    page.fill("#chat-input", too_long)
    page.get_by_role("button", name="Send").click()
    banner = page.get_by_role("alert")
    expect(banner).to_have_text("Message 0 is too long. Maximum 8000 characters allowed per message")
    assert is_red(banner.evaluate("e => getComputedStyle(e).color"))
    assert banner.bounding_box()["y"] > page.locator("#chat-input").bounding_box()["y"]  # below the input
    expect(page.locator("#chat-input")).to_have_value(too_long)
    expect(page.locator(".message")).to_have_count(0)
    assert len(fake.calls) == n
    # A bad slash command value: the rulebook's words, the text kept too.
    page.fill("#chat-input", "/temperature 5")
    page.press("#chat-input", "Enter")
    expect(banner).to_have_text("Temperature must be between 0.0 and 2.0")
    expect(page.locator("#chat-input")).to_have_value("/temperature 5")
    # Sending something valid clears the banner.
    send(page, "fine")
    expect(banner).to_be_hidden()
    wait_idle(page)


def test_new_conversation_button_and_shortcuts(page, fake):
    button = page.get_by_role("button", name="New Conversation")
    title = button.get_attribute("title")
    assert "Ctrl+Shift+N" in title and "Ctrl+Shift+O" in title
    for action in ("button", "Control+Shift+O", "Control+Shift+N"):
        send(page, f"before {action}")
        wait_idle(page)
        expect(page.locator(".message")).to_have_count(2)
        if action == "button":
            button.click()
        else:
            page.keyboard.press(action)
        expect(page.locator(".message")).to_have_count(0)
        expect(page.locator("#empty-state")).to_be_visible()
        expect(page.locator("#chat-input")).to_be_focused()
    n = len(fake.calls)
    send(page, "fresh start")
    wait_idle(page)
    assert [m.text for m in calls_after(fake, n)[0][0]] == ["fresh start"]  # nothing old was sent


def test_stop_button_and_escape_stop_the_reply_and_the_server(page, fake):
    for how in ("button", "Escape"):
        cancelled = fake.cancelled
        send(page, f"slow please ({how})")
        reply_el = page.locator(".message.assistant .message-content").last
        expect(reply_el).to_contain_text("word word")
        if how == "button":
            page.get_by_role("button", name="Stop").click()
        else:
            page.keyboard.press("Escape")
        wait_idle(page)
        deadline = time.time() + 2
        while fake.cancelled == cancelled and time.time() < deadline:
            time.sleep(0.01)
        assert fake.cancelled == cancelled + 1, "the server kept decoding after Stop"
        frozen = reply_el.text_content()
        assert 0 < frozen.count("word") < 400
        page.wait_for_timeout(200)
        assert reply_el.text_content() == frozen
        expect(page.locator(".message-stats").last).to_contain_text("stopped")
    health = json.loads(urllib.request.urlopen(page.url + "health").read())
    assert health["available_workers"] == 1


def test_click_user_message_to_edit_and_resend_click_reply_to_regenerate(page, fake):
    send(page, "first question")
    wait_idle(page)
    send(page, "second question")
    wait_idle(page)
    assert len(conversation(page)) == 4
    page.locator(".message.user .message-content").first.click()  # edit from the first message
    expect(page.locator("#chat-input")).to_have_value("first question")
    expect(page.locator(".message")).to_have_count(0)
    n = len(fake.calls)
    send(page, "edited question")
    wait_idle(page)
    assert conversation(page) == [["user", "edited question"], ["assistant", "You said: edited question"]]
    assert [m.text for m in calls_after(fake, n)[0][0]] == ["edited question"]
    # Regenerate: the reply is replaced by a new one for the same history.
    n = len(fake.calls)
    page.locator(".message.assistant .message-content").click()
    calls = calls_after(fake, n)
    wait_idle(page)
    assert [(m.role, m.text) for m in calls[0][0]] == [("user", "edited question")]
    assert conversation(page) == [["user", "edited question"], ["assistant", "You said: edited question"]]


def test_html_and_script_in_messages_are_shown_literally_and_never_run(page):
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'
    send(page, payload)
    wait_idle(page)
    assert conversation(page) == [["user", payload], ["assistant", "You said: " + payload]]
    assert page.locator(".chat-wrapper img, .chat-wrapper script, .chat-wrapper b").count() == 0
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.__pwned") is None
    # Even a direct attempt at an HTML sink is refused by the page's CSP (Trusted Types).
    refused = page.evaluate("""() => { try { document.body.innerHTML = '<b>x</b>'; return false; }
                                       catch (e) { return e instanceof TypeError; } }""")
    assert refused is True
    page.console_log.errors.clear()  # that refusal is logged as a CSP report, on purpose


def test_slash_commands(page, fake):
    send(page, "/help")
    expect(page.locator(".message.note").last).to_contain_text("/temperature")
    expect(page.locator(".message.note").last).to_contain_text("/clear")
    send(page, "/temperature 0.2")
    expect(page.locator(".message.note").last).to_have_text("Temperature set to 0.2")
    send(page, "/topk 5")
    expect(page.locator(".message.note").last).to_have_text("Top-k set to 5")
    send(page, "/temperature")
    expect(page.locator(".message.note").last).to_have_text("Temperature: 0.2")
    n = len(fake.calls)
    send(page, "with settings")
    wait_idle(page)
    sampling = calls_after(fake, n)[0][1]
    assert (sampling.temperature, sampling.top_k) == (0.2, 5)
    send(page, "/bogus")
    expect(page.get_by_role("alert")).to_contain_text("Unknown command /bogus")
    send(page, "/clear")
    expect(page.locator(".message")).to_have_count(0)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_real_checkpoint_through_the_page(browser):
    from nanochat_core import load_chat_model

    from conftest import FIXTURES

    model = load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu")
    config = replace(CONFIG, sampling=SamplingParams(temperature=0.0, top_k=50, max_tokens=40, seed=None))
    server = Server(webmod.create_app(config, [model]), config)
    context = browser.new_context()
    try:
        page = context.new_page()
        console = Console(page)
        page.goto(server.url)
        expect(page.locator("#model-name")).to_contain_text("d4")
        send(page, "Hello there, model")
        wait_idle(page)
        shown = page.locator(".message.assistant .message-content").text_content()
        body = json.dumps({"messages": [{"role": "user", "content": "Hello there, model"}],
                           "temperature": 0, "max_tokens": 40}).encode()
        raw = urllib.request.urlopen(urllib.request.Request(server.url + "/chat/completions", data=body)).read()
        api = "".join(json.loads(b[6:])["token"] for b in raw.decode().split("\n\n") if '"token"' in b)
        assert shown == api and shown
        assert console.unexpected() == []
    finally:
        context.close()
        server.close()
