"""The rest of the page in a real browser: the settings panel (the server's ranges, remembered),
dark mode and reduced motion, keyboard scrolling and Tab order, touch screens and phones, an
axe-core accessibility run, the API key field, and every command the server lists."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from browser_harness import (
    CONFIG,
    HTTP_ERRORS,
    browser,  # noqa: F401  (fixture)
    calls_after,
    conversation,
    make_page_fixture,
    make_server_fixture,
    open_page,
    page_config,
    run_axe,
    send,
    sent,
    start_server,
    wait_for,
    wait_idle,
)
from web_fakes import FakeModel, fake_info
from playwright.sync_api import expect

RICH = ("Here is **bold**, `inline code`, a [link](https://example.com) and a table:\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```")


def reply(messages, sampling):
    text = messages[-1].text
    if text.startswith("slow"):
        return "word " * 300
    if text.startswith("rich"):
        return RICH
    return f"You said: {text}"


def token_delay(messages):
    return 0.05 if messages[-1].text.startswith("slow") else 0.0


@pytest.fixture(scope="module")
def fake():
    # The demo model's long header name is what phones used to cut off.
    return FakeModel(reply=reply, token_delay=token_delay, first_delay=0.02, info=fake_info(is_demo=True))


server = make_server_fixture()
page = make_page_fixture()


def test_settings_panel_takes_the_servers_ranges_validates_and_is_remembered(page, fake, request):
    request.node.allowed_console = HTTP_ERRORS
    limits = page_config(page)["limits"]
    page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()
    for key in ("temperature", "top_k", "max_tokens"):
        field = page.locator(f"#setting-{key}")
        lo, hi = limits[key]
        assert (float(field.get_attribute("min")), float(field.get_attribute("max"))) == (lo, hi)
    expect(page.locator("#setting-top_k-hint")).to_have_text("0-200; 0 = full vocabulary")  # the registry's words
    dialog.get_by_label("Temperature").fill("5")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text("Temperature must be between 0.0 and 2.0")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Temperature").fill("0.3")
    dialog.get_by_label("Top-k").fill("7")
    dialog.get_by_label("Max tokens").fill("99")
    dialog.get_by_label("System message").fill("Be brief.")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    n = len(fake.calls)
    send(page, "hi")
    wait_idle(page)
    messages, sampling = calls_after(fake, n)[0]
    assert [(m.role, m.text) for m in messages] == [("system", "Be brief."), ("user", "hi")]
    assert (sampling.temperature, sampling.top_k, sampling.max_tokens) == (0.3, 7, 99)
    page.reload()
    page.get_by_role("button", name="Settings").click()
    expect(dialog.get_by_label("Temperature")).to_have_value("0.3")
    expect(dialog.get_by_label("System message")).to_have_value("Be brief.")
    dialog.get_by_role("button", name="Reset to defaults").click()
    defaults = page_config(page)["defaults"]
    expect(dialog.get_by_label("Top-k")).to_have_value(str(defaults["top_k"]))
    dialog.get_by_role("button", name="Cancel").click()  # not saved
    expect(dialog).to_be_hidden()
    send(page, "/topk")
    expect(page.locator(".message.note").last).to_have_text("Top-k: 7")


def test_dark_mode_follows_the_system_has_a_toggle_and_is_remembered(browser, server):
    page, finish = open_page(browser, server.url, color_scheme="dark")
    root = page.locator("html")
    expect(root).to_have_attribute("data-theme", "dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 28)"
    toggle = page.get_by_role("button", name="Dark theme")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(root).to_have_attribute("data-theme", "light")
    page.reload()
    expect(root).to_have_attribute("data-theme", "light")  # remembered over the system's dark
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    send(page, "/theme system")
    expect(root).to_have_attribute("data-theme", "dark")
    expect(page.locator(".message.note").last).to_have_text("Theme: following the system (dark now).")
    finish()


def test_reduced_motion_stops_the_animations(page):
    send(page, "slow and moving")
    dots = page.locator(".typing-indicator span").first
    expect(dots).to_be_visible()
    assert dots.evaluate("e => getComputedStyle(e).animationName") == "typing-bounce"
    page.emulate_media(reduced_motion="reduce")
    wait_for(lambda: dots.evaluate("e => getComputedStyle(e).animationName") == "none", what="the animation to stop")
    assert page.eval_on_selector(".send-button, .stop-button:not([hidden])",
                                 "e => getComputedStyle(e).transitionDuration") == "0s"
    page.keyboard.press("Escape")
    wait_idle(page)


def scroll_top(page):
    return page.eval_on_selector("#chat-container", "e => e.scrollTop")


def at_bottom(page):
    return page.eval_on_selector("#chat-container", "e => e.scrollHeight - e.scrollTop - e.clientHeight < 2")


def test_keyboard_scrolls_the_chat_from_the_input_and_tab_reaches_every_message(page):
    for i in range(6):
        send(page, f"message {i}\n" + "\n".join(f"line {j}" for j in range(8)))
        wait_idle(page)
    expect(page.locator("#chat-input")).to_be_focused()
    assert at_bottom(page)
    scroll_button = page.get_by_role("button", name="Scroll to the latest message")
    expect(scroll_button).to_be_hidden()
    page.keyboard.press("PageUp")
    wait_for(lambda: not at_bottom(page), what="PageUp to scroll up")
    expect(scroll_button).to_be_visible()  # scrolled up: a way back down
    top = scroll_top(page)
    page.keyboard.press("PageUp")
    wait_for(lambda: scroll_top(page) < top, what="a second PageUp")
    page.keyboard.press("PageDown")
    wait_for(lambda: scroll_top(page) > top - 1, what="PageDown")
    page.keyboard.press("Home")
    wait_for(lambda: scroll_top(page) == 0, what="Home to reach the top")
    page.keyboard.press("End")
    wait_for(lambda: at_bottom(page), what="End to reach the bottom")
    page.keyboard.press("Home")
    scroll_button.click()
    wait_for(lambda: at_bottom(page), what="the scroll button")
    expect(scroll_button).to_be_hidden()
    expect(page.locator("#chat-input")).to_be_focused()
    # Typing in the message box: Home and End move the cursor as usual.
    page.keyboard.type("abc")
    page.keyboard.press("Home")
    assert page.eval_on_selector("#chat-input", "e => e.selectionStart") == 0 and at_bottom(page)
    # Tab from the chat area reaches the first message, then its buttons, each with a visible focus ring.
    page.locator("#chat-container").focus()
    page.keyboard.press("Tab")
    first = page.locator(".message").first
    expect(first).to_be_focused()
    assert first.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    page.keyboard.press("Tab")
    copy = first.get_by_role("button", name="Copy message")
    expect(copy).to_be_focused()
    wait_for(lambda: copy.evaluate("e => getComputedStyle(e.parentElement).opacity") == "1", what="visible buttons")
    assert copy.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    page.keyboard.press("Tab")
    expect(first.get_by_role("button", name="Edit message")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".message").nth(1)).to_be_focused()


def test_touch_screens_enter_adds_a_line_and_phones_show_everything(browser, server, fake):
    page, finish = open_page(browser, server.url, viewport={"width": 390, "height": 844},
                             has_touch=True, is_mobile=True, device_scale_factor=2)
    page.locator("#chat-input").tap()
    page.keyboard.type("first line")
    page.keyboard.press("Enter")
    page.keyboard.type("second line")
    expect(page.locator("#chat-input")).to_have_value("first line\nsecond line")
    expect(page.locator(".message")).to_have_count(0)  # Enter did not send
    n = len(fake.calls)
    page.get_by_role("button", name="Send").tap()
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "first line\nsecond line")]
    hint = page.locator("#hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Enter adds a line; the send button sends")
    name = page.locator("#model-name")
    expect(name).to_have_text("demo model (d4, gen5-smear-backout)")
    # Readable in full: nothing cut off or past the screen's edge.
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    box = name.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.locator("#sidebar")).to_be_hidden()  # a drawer on phones, opened from the header
    page.get_by_role("button", name="Conversations").tap()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator(".conversation-item")).to_have_count(1)
    page.get_by_role("button", name="Close the conversation list").tap()
    # No hover on a touch screen: the message buttons are always shown.
    actions = page.locator(".message.user .message-actions")
    assert actions.evaluate("e => getComputedStyle(e).opacity") == "1"
    finish()


def test_axe_finds_no_serious_or_critical_violations(browser, server):
    page, finish = open_page(browser, server.url, bypass_csp=True)  # to inject axe-core
    send(page, "rich reply please")
    wait_idle(page)
    send(page, "/help")
    problems = run_axe(page)
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    problems += run_axe(page)
    page.get_by_role("button", name="Settings").click()
    problems += run_axe(page)
    page.keyboard.press("Escape")
    assert problems == [], problems
    finish()
    phone, finish = open_page(browser, server.url, bypass_csp=True, viewport={"width": 390, "height": 844},
                              has_touch=True, is_mobile=True)
    phone.fill("#chat-input", "rich on a phone")
    phone.get_by_role("button", name="Send").tap()
    wait_idle(phone)
    assert run_axe(phone) == []
    finish()


@pytest.fixture(scope="module")
def keyed_server(fake):
    config = replace(CONFIG, api_key="sekrit-key")
    s = start_server([fake], config)
    yield s
    s.close()


def test_the_api_key_goes_into_a_password_field_and_survives_a_reload(browser, keyed_server, fake):
    page, finish = open_page(browser, keyed_server.url, allowed_console=HTTP_ERRORS)
    expect(page.locator(".message.note")).to_contain_text("This server needs an API key")
    send(page, "hello with a key")
    expect(page.get_by_role("alert")).to_contain_text("Missing or wrong API key")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()  # asked for at once
    field = dialog.get_by_label("Key for this server")
    expect(field).to_have_attribute("type", "password")
    field.fill("sekrit-key")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#chat-input")).to_have_value("hello with a key")  # the failed send put it back
    n = len(fake.calls)
    page.press("#chat-input", "Enter")
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "hello with a key")]
    page.reload()
    expect(page.locator(".message.note")).to_have_count(0)  # the key is still there: no prompt
    n = len(fake.calls)
    send(page, "after a reload")
    wait_idle(page)
    assert sent(calls_after(fake, n)[0]) == [("user", "after a reload")]
    send(page, "/key")
    expect(dialog).to_be_visible()
    expect(field).to_have_value("sekrit-key")
    dialog.get_by_role("button", name="Cancel").click()
    assert "sekrit-key" not in page.locator("body").inner_text()  # never echoed on the page
    finish()


def test_every_command_the_server_lists_works_on_the_page(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    names = [c["name"] for c in page_config(page)["commands"]]
    assert set(names) <= set(page.evaluate("window.nanochat.page.commands"))
    last_note = page.locator(".message.note").last
    send(page, "/stop")
    expect(last_note).to_have_text("No reply is being written.")
    send(page, "first words")
    wait_idle(page)
    send(page, "/stats")
    expect(last_note).to_contain_text("Model: demo model (d4, gen5-smear-backout)")
    expect(last_note).to_contain_text(re.compile(r"Last reply: \d+ tokens"))
    send(page, "/copy")
    expect(last_note).to_have_text("Copied the last reply.")
    assert page.evaluate("navigator.clipboard.readText()") == "You said: first words"
    send(page, "/max-tokens 64")
    expect(last_note).to_have_text("Max tokens set to 64")
    send(page, "/system Be terse.")
    send(page, "/system")
    expect(last_note).to_have_text("System message: Be terse.")
    send(page, "/system off")
    expect(last_note).to_contain_text("System message removed.")
    send(page, "/regenerate")
    wait_idle(page)
    expect(page.locator(".message.assistant .branch-count")).to_have_text("2/2")
    send(page, "/edit")
    expect(page.locator(".message.user textarea.edit-input")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(".message.editing")).to_have_count(0)
    send(page, "/theme dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    send(page, "/theme")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    send(page, "/settings")
    expect(page.get_by_role("dialog", name="Settings")).to_be_visible()
    page.keyboard.press("Escape")
    send(page, "/key")
    expect(page.get_by_role("dialog", name="API key")).to_be_visible()
    page.keyboard.press("Escape")
    with page.expect_download() as download:
        send(page, "/export json")
    assert download.value.suggested_filename == "first-words.json"
    send(page, "/new")
    expect(page.locator(".message.user")).to_have_count(0)
    send(page, "/help")
    help_text = last_note.text_content()
    for name in names:
        command = next(c for c in page_config(page)["commands"] if c["name"] == name)
        assert command["slash"][0] in help_text and command["help"] in help_text
    assert conversation(page) == []
