"""The chat page in a real browser: the seed's behaviours, its security (strict CSP, one Trusted
Types policy, no CDN), nanochat's own page against this server, and a real checkpoint.
Chromium + Playwright against the real server with a scripted backend (browser_harness.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import replace

import pytest

from browser_harness import (
    CONFIG,
    HTTP_ERRORS,
    REPO,
    browser,  # noqa: F401  (fixture)
    calls_after,
    conversation,
    make_page_fixture,
    make_server_fixture,
    open_page,
    send,
    sent,
    sha256,
    start_server,
    stored,
    vendored_files,
    wait_for,
    wait_idle,
)
from nanochat_core.chat import SamplingParams
from web_fakes import FakeModel
from playwright.sync_api import expect

GEN = "gen5-smear-backout"


def reply(messages, sampling):
    text = messages[-1].text
    if text.startswith("slow"):
        return "word " * 400
    return f"You said: {text}"


def token_delay(messages):
    return 0.05 if messages[-1].text.startswith("slow") else 0.02


@pytest.fixture(scope="module")
def fake():
    return FakeModel(reply=reply, token_delay=token_delay, first_delay=0.3)


server = make_server_fixture()
page = make_page_fixture()


@pytest.fixture
def allow_http_errors(request):
    request.node.allowed_console = HTTP_ERRORS


# ------------------------------------------------------------------------------------------ the seed


def test_send_and_watch_the_reply_stream_in(page, fake, server):
    send(page, "hello streaming world")
    expect(page.locator(".message.user .message-content")).to_have_text("hello streaming world")
    expect(page.locator(".typing-indicator")).to_be_visible()  # ··· before the first token
    reply_el = page.locator(".message.assistant .message-content")
    seen = set()
    deadline = time.time() + 10
    while time.time() < deadline:
        text, dots = reply_el.evaluate("e => [e.textContent, e.querySelectorAll('.typing-indicator').length]")
        seen.add(text)
        if text == "You said: hello streaming world":
            break
        if text:
            assert dots == 1  # the dots stay for the whole reply, not only until the first token
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
    # Everything the page loaded came from this server: no CDN, no other origin.
    urls = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server.url + "/") for u in urls), urls
    assert any("/static/vendor/markdown-it/" in u for u in urls)


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
    assert sent(calls_after(fake, n)[0]) == [("user", "line one\nline two")]


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
    colors = page.eval_on_selector("#send-button", "b => getComputedStyle(b).backgroundColor")
    assert colors == "rgb(209, 213, 219)"  # disabled gray
    page.fill("#chat-input", "hover me")
    normal = page.eval_on_selector("#send-button", "e => getComputedStyle(e).backgroundColor")
    page.hover("#send-button")
    wait_for(lambda: page.eval_on_selector("#send-button", "e => getComputedStyle(e).backgroundColor") == "rgb(0, 0, 0)",
             what="the darker hover colour")
    assert normal != "rgb(0, 0, 0)"


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


def is_red(css_color: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return r > 150 and g < 80 and b < 80


def test_error_banner_shows_the_servers_words_in_red_keeps_the_text_and_marks_the_message(page, fake, allow_http_errors):
    too_long = "z" * 8001
    n = len(fake.calls)
    page.fill("#chat-input", too_long)
    page.get_by_role("button", name="Send").click()
    banner = page.get_by_role("alert")
    expect(banner).to_have_text("Message 0 is too long. Maximum 8000 characters allowed per message")
    assert is_red(banner.evaluate("e => getComputedStyle(e).color"))
    assert banner.bounding_box()["y"] > page.locator("#chat-input").bounding_box()["y"]  # below the input
    expect(page.locator("#chat-input")).to_have_value(too_long)
    expect(page.locator("#input-wrapper")).to_have_class(re.compile(r"\bhas-error\b"))  # the draft is meant
    expect(page.locator(".message")).to_have_count(0)
    assert len(fake.calls) == n
    # A bad slash command value: the rulebook's words, the text kept too.
    page.fill("#chat-input", "/temperature 5")
    page.press("#chat-input", "Enter")
    expect(banner).to_have_text("Temperature must be between 0.0 and 2.0")
    expect(page.locator("#chat-input")).to_have_value("/temperature 5")
    # An earlier message that is too long: the banner keeps the words, that message is marked.
    send(page, "a" * 7995)  # fine, but its echo ("You said: " + 7995) is 8005 characters
    wait_idle(page)
    send(page, "next")
    expect(banner).to_have_text("Message 1 is too long. Maximum 8000 characters allowed per message")
    marked = page.locator(".message.has-error")
    expect(marked).to_have_count(1)
    expect(marked).to_have_class(re.compile(r"\bassistant\b"))
    expect(marked.locator(".error-mark")).to_have_text("The error below is about this message")
    expect(page.locator("#chat-input")).to_have_value("next")
    # Starting over and sending something valid clears the banner and the marks.
    page.keyboard.press("Control+Shift+O")
    send(page, "fine")
    expect(banner).to_be_hidden()
    expect(page.locator(".has-error")).to_have_count(0)
    wait_idle(page)


def test_new_conversation_button_and_shortcuts(page, fake):
    button = page.get_by_role("button", name="New Conversation")
    title = button.get_attribute("title")
    # Chromium keeps Ctrl+Shift+N for itself: the shortcut that works is listed first.
    assert title.index("Ctrl+Shift+O") < title.index("Ctrl+Shift+N")
    assert button.get_attribute("aria-keyshortcuts").startswith("Control+Shift+O")
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
    assert sent(calls_after(fake, n)[0]) == [("user", "fresh start")]  # nothing old was sent


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
        wait_for(lambda: fake.cancelled == cancelled + 1, "the server to stop decoding")
        frozen = reply_el.text_content()
        assert 0 < frozen.count("word") < 400
        page.wait_for_timeout(200)  # nothing more arrives after Stop
        assert reply_el.text_content() == frozen
        expect(page.locator(".message-stats").last).to_contain_text("stopped")
    health = json.loads(urllib.request.urlopen(page.url + "health").read())
    assert health["available_workers"] == 1


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
    expect(page.get_by_role("alert")).to_have_text(
        "Unknown command /bogus: type /help for the list, or //bogus to send it as a message")
    n = len(fake.calls)
    send(page, "//bogus is a path")
    wait_idle(page)
    assert sent(calls_after(fake, n)[0])[-1] == ("user", "/bogus is a path")
    send(page, "/clear")
    expect(page.locator(".message")).to_have_count(0)
    expect(page.get_by_role("alert")).to_be_hidden()


# ------------------------------------------------------------------------------------------ security


def test_html_and_script_in_messages_are_shown_literally_and_never_run(page):
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'
    send(page, payload)
    wait_idle(page)
    assert conversation(page) == [["user", payload], ["assistant", "You said: " + payload]]
    # Markdown links only with safe schemes, opening a new tab without a handle on this page;
    # raw HTML and images never become elements.
    send(page, "[js](javascript:window.__pwned=3) [data](data:text/html,x) <a href='javascript:x'>raw</a> "
               "![pic](https://example.com/x.png) [ok](https://example.com/a) <svg onload=window.__pwned=4>")
    wait_idle(page)
    reply = page.locator(".message.assistant").last
    links = reply.locator("a").evaluate_all("as => as.map(a => [a.getAttribute('href'), a.target, a.rel])")
    assert links == [["https://example.com/x.png", "_blank", "noopener noreferrer"],
                     ["https://example.com/a", "_blank", "noopener noreferrer"]]
    expect(reply).to_contain_text("[js](javascript:window.__pwned=3)")
    expect(reply).to_contain_text("<a href='javascript:x'>raw</a>")
    assert page.locator(".chat-wrapper img, .chat-wrapper script, .chat-wrapper b, .chat-wrapper svg[onload]").count() == 0
    page.wait_for_timeout(100)
    assert page.evaluate("() => window.__pwned") is None
    # The CSP: an HTML string into a sink is refused, and no other Trusted Types policy can be made
    # (DOMPurify's own default policy included); only the page's "nanochat-html" exists.
    verdict = page.evaluate("""() => {
        const out = {};
        try { document.body.innerHTML = '<b>x</b>'; out.sink = 'allowed'; } catch (e) { out.sink = e.name; }
        for (const name of ['evil', 'dompurify', 'nanochat-html']) {
            try { trustedTypes.createPolicy(name, {createHTML: s => s}); out[name] = 'created'; }
            catch (e) { out[name] = e.name; }
        }
        return out; }""")
    assert verdict == {"sink": "TypeError", "evil": "TypeError", "dompurify": "TypeError", "nanochat-html": "TypeError"}
    page.console_log.errors.clear()  # those refusals are logged as CSP reports, on purpose


def test_the_csp_names_one_trusted_types_policy(server):
    with urllib.request.urlopen(server.url + "/") as response:
        csp = response.headers["Content-Security-Policy"]
    assert "require-trusted-types-for 'script'" in csp
    assert re.search(r"trusted-types nanochat-html(;|$)", csp)
    assert "style-src 'self';" in csp and "script-src 'self';" in csp


def test_vendored_libraries_match_their_manifest():
    files = vendored_files()
    assert {p.split("/")[-2] for p, _ in files} >= {"markdown-it", "dompurify", "highlight.js", "axe-core"}
    for path, digest in files:
        assert sha256(REPO / path) == digest, f"{path} differs from web/static/vendor/MANIFEST.txt (run scripts/vendor_web.sh)"
        licence = (REPO / path).parent / "LICENSE"
        assert licence.is_file(), f"no licence beside {path}"


# ------------------------------------------------------------------------------------------ compatibility


NANOCHAT_MIRROR = "/work/.mirror/karpathy+nanochat/repo"
NANOCHAT_UI_COMMIT = "da32e1d^"  # the last commit with nanochat/ui.html (removed in da32e1d)


def nanochat_ui_html() -> str:
    """nanochat's own chat page, read at test time (never copied into this repository): from
    $NANOCHAT_UI_HTML, or from a nanochat git mirror ($NANOCHAT_MIRROR)."""
    path = os.environ.get("NANOCHAT_UI_HTML")
    if path:
        return open(path, encoding="utf-8").read()
    mirror = os.environ.get("NANOCHAT_MIRROR", NANOCHAT_MIRROR)
    try:
        return subprocess.run(["git", "-C", mirror, "show", f"{NANOCHAT_UI_COMMIT}:nanochat/ui.html"],
                              capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("nanochat's ui.html is not available: set NANOCHAT_UI_HTML to its path, or "
                    "NANOCHAT_MIRROR to a clone of karpathy/nanochat")


def test_nanochats_original_page_works_against_this_server(browser, server, fake):
    html = nanochat_ui_html()
    context = browser.new_context()
    try:
        page = context.new_page()
        logs = []
        page.on("console", lambda m: logs.append((m.type, m.text)))
        page.on("pageerror", lambda e: logs.append(("pageerror", str(e))))
        # Served at "/" as nanochat's chat_web.py served it; everything else is our server.
        page.route(server.url + "/", lambda route: route.fulfill(body=html, content_type="text/html"))
        with page.expect_console_message(lambda m: m.text.startswith("Engine status")):  # its /health check
            page.goto(server.url + "/")
        n = len(fake.calls)
        for i, text in enumerate(["first from nanochat's page", "second from nanochat's page"]):
            page.fill("#chatInput", text)
            page.press("#chatInput", "Enter")
            expect(page.locator(".message.assistant .message-content").nth(i)).to_have_text(f"You said: {text}")
            expect(page.locator("#sendButton")).to_be_disabled()
            wait_for(lambda: len(fake.calls) > n + i, "the request")
            page.wait_for_function("() => !document.querySelector('.typing-indicator')")
        assert sent(fake.calls[n + 1]) == [("user", "first from nanochat's page"),
                                           ("assistant", "You said: first from nanochat's page"),
                                           ("user", "second from nanochat's page")]
        assert [entry for entry in logs if entry[0] in ("error", "pageerror")] == []
    finally:
        context.close()


def test_a_real_checkpoint_through_the_page(browser):
    from nanochat_core import load_chat_model

    from conftest import FIXTURES

    model = load_chat_model(base_dir=FIXTURES / GEN / "base_dir", device="cpu")
    config = replace(CONFIG, sampling=SamplingParams(temperature=0.0, top_k=50, max_tokens=40, seed=None))
    server = start_server([model], config)
    try:
        page, finish = open_page(browser, server.url)
        expect(page.locator("#model-name")).to_contain_text("d4")
        send(page, "Hello there, model")
        wait_idle(page)
        expect(page.locator(".conversation-item")).to_have_count(1)
        body = json.dumps({"messages": [{"role": "user", "content": "Hello there, model"}],
                           "temperature": 0, "max_tokens": 40}).encode()
        raw = urllib.request.urlopen(urllib.request.Request(server.url + "/chat/completions", data=body)).read()
        api = "".join(json.loads(b[6:])["token"] for b in raw.decode().split("\n\n") if '"token"' in b)
        (record,) = stored(page)
        assert [m["content"] for m in record["messages"]] == ["Hello there, model", api] and api
        finish()
    finally:
        server.close()


def test_only_the_markdown_renderer_touches_an_html_sink():
    static = REPO / "web" / "static"
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
             "createContextualFragment", "DOMParser", "srcdoc")
    for script in sorted(static.glob("*.js")):
        text = "\n".join(line for line in script.read_text().splitlines() if not line.strip().startswith("//"))
        found = [s for s in sinks if s in text]
        if script.name == "markdown.js":
            # one assignment, of DOMPurify's output signed by the page's one policy
            assert found == ["innerHTML"] and text.count("innerHTML") == 1
            assert "target.innerHTML = sanitize(html);" in text
        else:
            assert found == [], (script.name, found)


def test_command_answers_stay_on_screen_when_the_next_message_is_sent(page):
    send(page, "/help")
    send(page, "after help")
    wait_idle(page)
    expect(page.locator(".message.note")).to_have_count(1)
    assert page.locator(".chat-wrapper > .message").evaluate_all(
        "els => els.map(e => e.classList[1])") == ["note", "user", "assistant"]
