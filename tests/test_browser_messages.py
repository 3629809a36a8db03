"""Reading and acting on messages in a real browser: Markdown while streaming, copy buttons,
text selection that never acts, edit and regenerate as branches, failures that put everything
back, a connection lost mid-reply, the character counter, calculator parts sent back."""

from __future__ import annotations

import itertools
import re

import pytest

from browser_harness import (
    HTTP_ERRORS,
    CuttableProxy,
    browser,  # noqa: F401  (fixture)
    calls_after,
    conversation,
    make_page_fixture,
    make_server_fixture,
    open_page,
    send,
    sent,
    start_server,
    stored,
    wait_for,
    wait_idle,
)
from web_fakes import FakeModel
from playwright.sync_api import expect

MARKDOWN = """**Bold start** and *emphasis*.

- one
- two

| name | count |
|------|------:|
| a    | 1     |

```python
def add(a, b):
    return a + b
```

See [the docs](https://example.com/docs) now."""

control = {"fail": False}
counter = itertools.count(1)


def reply(messages, sampling):
    if control["fail"]:
        raise RuntimeError("the model fell over")
    text = messages[-1].text
    if text.startswith("md"):
        return MARKDOWN
    if text.startswith("slow"):
        return "word " * 300
    return f"You said: {text} (#{next(counter)})"


def token_delay(messages):
    text = messages[-1].text
    return 0.05 if text.startswith(("md", "slow")) else 0.0


@pytest.fixture(scope="module")
def fake():
    return FakeModel(reply=reply, token_delay=token_delay, first_delay=0.05)


server = make_server_fixture()
page = make_page_fixture()


@pytest.fixture(autouse=True)
def healthy_model():
    control["fail"] = False
    yield
    control["fail"] = False


def hover_click(page, message, name):
    message.hover()
    message.get_by_role("button", name=name).click()


# ------------------------------------------------------------------------------------------


def test_replies_render_as_markdown_while_they_stream_with_highlighted_code(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    send(page, "md please")
    reply = page.locator(".message.assistant .message-content")
    expect(reply.locator("strong")).to_have_text("Bold start")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()  # still streaming: Markdown as it comes
    assert reply.locator("table").count() == 0  # not there yet
    wait_idle(page)
    expect(reply.locator("em")).to_have_text("emphasis")
    expect(reply.locator("li")).to_have_text(["one", "two"])
    expect(reply.locator("th")).to_have_text(["name", "count"])
    expect(reply.locator("td.align-right")).to_have_text("1")
    code = reply.locator(".code-block")
    expect(code.locator(".code-lang")).to_have_text("python")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    link = reply.locator("a")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    assert "**" not in reply.text_content()
    # Copy buttons: the code block, the reply (its Markdown source), the user's message.
    code.get_by_role("button", name="Copy code").click()
    wait_for(lambda: page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b\n",
             what="the code in the clipboard")
    hover_click(page, page.locator(".message.assistant"), "Copy reply")
    wait_for(lambda: page.evaluate("navigator.clipboard.readText()") == MARKDOWN, what="the reply in the clipboard")
    hover_click(page, page.locator(".message.user"), "Copy message")
    wait_for(lambda: page.evaluate("navigator.clipboard.readText()") == "md please", what="the message in the clipboard")
    expect(page.locator(".message.user .action-button.copied")).to_have_count(1)  # a tick says it worked
    expect(page.locator(".message-stats")).to_contain_text("tokens")  # the per-reply stats stay


def test_selecting_or_clicking_message_text_never_acts(page, fake):
    send(page, "first question")
    wait_idle(page)
    send(page, "second question")
    wait_idle(page)
    before = conversation(page)
    page.fill("#chat-input", "my draft")
    n = len(fake.calls)
    reply = page.locator(".message.assistant .message-content").first
    reply.click(click_count=3)  # select a paragraph of the reply
    assert "You said: first question" in page.evaluate("getSelection().toString()")
    box = reply.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.locator(".message.user .message-content").first.click()
    page.locator(".message.user .message-content").last.dblclick()
    page.wait_for_timeout(300)  # anything the clicks started would be on its way by now
    assert len(fake.calls) == n
    assert conversation(page) == before
    expect(page.locator("#chat-input")).to_have_value("my draft")
    expect(page.locator(".message.editing")).to_have_count(0)


def test_regenerate_keeps_the_earlier_reply_as_a_branch_and_sends_the_branch_shown(page, fake):
    send(page, "first")
    wait_idle(page)
    send(page, "second")
    wait_idle(page)
    first_reply = conversation(page)[1][1]
    n = len(fake.calls)
    hover_click(page, page.locator(".message.assistant").first, "Regenerate reply")
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "first")]
    shown = conversation(page)
    assert len(shown) == 2 and shown[1][1] != first_reply and shown[1][1].startswith("You said: first")
    nav = page.locator(".message.assistant .branch-nav")
    expect(nav.locator(".branch-count")).to_have_text("2/2")
    nav.get_by_role("button", name=re.compile("^Previous version")).click()
    expect(page.locator(".message.assistant .branch-count").first).to_have_text("1/2")
    assert [t for _, t in conversation(page)][:3] == ["first", first_reply, "second"]  # the old branch, whole
    page.locator(".message.assistant").first.get_by_role("button", name=re.compile("^Next version")).click()
    expect(page.locator(".message")).to_have_count(2)
    regenerated = conversation(page)[1][1]
    n = len(fake.calls)
    send(page, "third")
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "first"), ("assistant", regenerated), ("user", "third")]


def test_edit_in_place_keeps_the_draft_and_the_earlier_version(page, fake):
    send(page, "alpha")
    wait_idle(page)
    send(page, "beta")
    wait_idle(page)
    before = conversation(page)
    page.fill("#chat-input", "unsent draft")
    first = page.locator(".message.user").first
    hover_click(page, first, "Edit message")
    editor = first.locator("textarea.edit-input")
    expect(editor).to_have_value("alpha")
    expect(editor).to_be_focused()
    first.get_by_role("button", name="Cancel").click()
    assert conversation(page) == before
    n = len(fake.calls)
    hover_click(page, first, "Edit message")
    editor.fill("alpha edited")
    first.get_by_role("button", name="Save").click()
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "alpha edited")]
    assert [t for _, t in conversation(page)][0] == "alpha edited"
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator(".message.user .branch-count")).to_have_text("2/2")
    expect(page.locator("#chat-input")).to_have_value("unsent draft")  # the draft was never touched
    page.locator(".message.user").get_by_role("button", name=re.compile("^Previous version")).click()
    assert conversation(page) == before  # the earlier version, with everything after it


def test_failed_send_regeneration_and_edit_put_everything_back(page, fake):
    page.request_failures = []
    control["fail"] = True
    page.fill("#chat-input", "  boom\nwith two lines  ")
    page.press("#chat-input", "Enter")
    banner = page.get_by_role("alert")
    expect(banner).to_have_text("generation failed: RuntimeError: the model fell over")
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator("#chat-input")).to_have_value("  boom\nwith two lines  ")  # exactly as typed
    control["fail"] = False
    page.fill("#chat-input", "steady")
    page.press("#chat-input", "Enter")
    wait_idle(page)
    before = conversation(page)
    page.fill("#chat-input", "a draft")
    control["fail"] = True
    hover_click(page, page.locator(".message.assistant"), "Regenerate reply")
    expect(banner).to_contain_text("generation failed")
    wait_idle(page)
    assert conversation(page) == before
    expect(page.locator(".branch-nav")).to_have_count(0)  # no empty branch left behind
    expect(page.locator("#chat-input")).to_have_value("a draft")
    # A failed edit: the earlier version is back and the editor reopens with the edited text.
    user = page.locator(".message.user")
    hover_click(page, user, "Edit message")
    user.locator("textarea").fill("steady, edited")
    user.get_by_role("button", name="Save").click()
    expect(banner).to_contain_text("generation failed")
    expect(user.locator("textarea")).to_have_value("steady, edited")
    expect(page.locator(".branch-nav")).to_have_count(0)
    user.get_by_role("button", name="Cancel").click()
    assert conversation(page) == before
    expect(page.locator("#chat-input")).to_have_value("a draft")
    (record,) = stored(page)
    assert [m["content"] for m in record["messages"]] == [c for _, c in before]


@pytest.fixture
def proxy(server):
    p = CuttableProxy(server.port)
    yield p
    p.close()


def test_a_connection_lost_mid_reply_is_marked_and_the_next_turn_asks_about_it(browser, proxy, fake):
    page, finish = open_page(browser, proxy.url, allowed_console=("net::ERR",))
    send(page, "slow story")
    reply = page.locator(".message.assistant .message-content")
    expect(reply).to_contain_text("word word word")
    proxy.cut()
    wait_idle(page)
    expect(page.locator(".message-stats")).to_contain_text("connection lost")
    expect(page.locator(".message-stats")).not_to_contain_text("stopped")
    expect(page.get_by_role("alert")).to_have_text("The connection to the server was lost in the middle of the reply.")
    partial = reply.text_content()
    assert partial.count("word") > 2
    n = len(fake.calls)
    send(page, "what now")
    prompt = page.get_by_role("group", name=re.compile("connection was lost"))
    expect(prompt).to_be_visible()
    expect(page.locator("#chat-input")).to_have_value("what now")  # nothing sent yet
    page.wait_for_timeout(100)
    assert len(fake.calls) == n
    prompt.get_by_role("button", name="Leave it out").click()
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "slow story"), ("user", "what now")]
    expect(page.locator(".message-stats").first).to_contain_text("left out of the context")
    records = stored(page)
    lost = [m for m in records[0]["messages"] if m.get("finish") == "disconnected"]
    assert len(lost) == 1 and lost[0]["context"] is False
    # The question is asked once: the next message goes straight out.
    n = len(fake.calls)
    send(page, "and then")
    wait_idle(page)
    expect(prompt).to_be_hidden()
    assert sent(calls_after(fake, n)[0])[-1] == ("user", "and then")
    finish()


def test_a_counter_shows_characters_used_near_the_limits(page):
    counter = page.locator("#char-counter")
    page.fill("#chat-input", "x" * 6000)
    expect(counter).to_be_hidden()
    page.fill("#chat-input", "x" * 7000)
    expect(counter).to_have_text("7,000 / 8,000 characters in this message")
    expect(counter).not_to_have_class(re.compile(r"\bover\b"))
    page.fill("#chat-input", "x" * 8001)
    expect(counter).to_have_class(re.compile(r"\bover\b"))
    for _ in range(2):
        send(page, "y" * 7000)  # echoed: about 14,000 characters a turn
        wait_idle(page)
    expect(counter).to_have_text(re.compile(r"^28,0\d\d / 32,000 in the whole conversation$"))
    page.fill("#chat-input", "z" * 4000)
    expect(counter).to_have_class(re.compile(r"\bover\b"))


@pytest.fixture(scope="module")
def tool_server():
    fake = FakeModel(reply=lambda messages, sampling: "The answer is 5.", tool=("2+3", "5"))
    s = start_server([fake])
    s.fake = fake
    yield s
    s.close()


def test_calculator_parts_are_shown_and_sent_back_as_they_came(browser, tool_server):
    fake = tool_server.fake
    page, finish = open_page(browser, tool_server.url)
    send(page, "what is 2+3?")
    wait_idle(page)
    reply = page.locator(".message.assistant .message-content")
    expect(reply.locator(".tool")).to_have_text(["calculator: 2+3", "= 5"])
    expect(reply.locator(".md-part")).to_have_text("The answer is 5.")
    n = len(fake.calls)
    send(page, "thanks")
    wait_idle(page)
    messages = calls_after(fake, n)[0][0]
    assert [dict(p) for p in messages[1].content] == [
        {"type": "python", "text": "2+3"}, {"type": "python_output", "text": "5"},
        {"type": "text", "text": "The answer is 5."}]
    finish()
