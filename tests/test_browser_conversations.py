"""Conversations kept in the browser (IndexedDB), in a real browser: the sidebar across reloads,
rename, export (JSON in the documented shape, Markdown), delete with undo, import, and New
Conversation with undo."""

from __future__ import annotations

import json
import re

import pytest

from browser_harness import (
    HTTP_ERRORS,
    browser,  # noqa: F401  (fixture)
    conversation,
    make_page_fixture,
    make_server_fixture,
    send,
    wait_idle,
)
from web_fakes import FakeModel
from playwright.sync_api import expect


def reply(messages, sampling):
    return f"Noted: {messages[-1].text} ({len(messages)})"


@pytest.fixture(scope="module")
def fake():
    return FakeModel(reply=reply, first_delay=0.02)


server = make_server_fixture()
page = make_page_fixture()


def sidebar_titles(page):
    return page.locator(".conversation-item .conversation-title").all_text_contents()


def item_menu(page, title, action):
    item = page.locator(".conversation-item").filter(has_text=title).first
    item.locator("summary").click()
    item.get_by_role("button", name=action).click()


def test_conversations_are_kept_across_reloads_with_their_branches(page):
    expect(page.locator("#sidebar")).to_be_visible()  # beside the chat on a wide screen
    send(page, "apples are red")
    wait_idle(page)
    page.locator(".message.assistant").hover()
    page.get_by_role("button", name="Regenerate reply").click()
    wait_idle(page)
    expect(page.locator(".branch-count")).to_have_text("2/2")
    page.get_by_role("button", name=re.compile("^Previous version")).click()  # show version 1
    expect(page.locator(".branch-count")).to_have_text("1/2")
    apples = conversation(page)
    page.get_by_role("button", name="New Conversation").click()
    send(page, "bananas are yellow")
    wait_idle(page)
    expect(page.locator(".conversation-item")).to_have_count(2)

    page.reload()
    expect(page.locator("#chat-input")).to_be_focused()
    expect(page.locator(".message")).to_have_count(0)  # a reload opens a blank chat
    expect(page.locator("#empty-state")).to_be_visible()
    expect(page.locator(".conversation-item")).to_have_count(2)
    assert sidebar_titles(page) == ["bananas are yellow", "apples are red"]  # newest first
    page.locator(".conversation-open").filter(has_text="apples are red").click()
    expect(page.locator(".message")).to_have_count(2)
    assert conversation(page) == apples  # the version that was shown, with its sibling kept
    expect(page.locator(".branch-count")).to_have_text("1/2")
    expect(page.locator(".conversation-item.current")).to_contain_text("apples are red")


def test_rename_export_delete_with_undo_and_import(page, tmp_path, request):
    request.node.allowed_console = HTTP_ERRORS
    send(page, "export me")
    wait_idle(page)
    item_menu(page, "export me", "Rename")
    rename = page.get_by_role("textbox", name="New name")
    rename.fill("My export")
    rename.press("Enter")
    expect(page.locator(".conversation-item .conversation-title")).to_have_text("My export")

    with page.expect_download() as download:
        item_menu(page, "My export", "Export JSON")
    path = tmp_path / "export.json"
    download.value.save_as(path)
    assert download.value.suggested_filename == "my-export.json"
    data = json.loads(path.read_text())
    # The documented shape (docs/web-conversations.md).
    assert data["format"] == "nanochat-conversation" and data["version"] == 1
    assert data["title"] == "My export" and data["title_edited"] is True
    assert set(data) >= {"id", "created", "updated", "model", "settings", "current", "messages"}
    assert data["model"]["name"] == page.locator("#model-name").text_content()
    assert set(data["settings"]) == {"temperature", "top_k", "max_tokens", "system"}
    user, assistant = data["messages"]
    assert (user["role"], user["content"], user["parent"]) == ("user", "export me", None)
    assert (assistant["role"], assistant["content"], assistant["parent"]) == ("assistant", "Noted: export me (1)", user["id"])
    assert assistant["finish"] == "stop" and "summary" in assistant["stats"]
    assert data["current"] == assistant["id"]

    with page.expect_download() as md_download:
        send(page, "/export md")
    md = md_download.value.path().read_text()
    assert md.startswith("# My export\n") and "## You\n\nexport me" in md and "## Assistant\n\nNoted: export me (1)" in md

    item_menu(page, "My export", "Delete")
    expect(page.locator(".conversation-item")).to_have_count(0)
    expect(page.locator(".message")).to_have_count(0)  # it was on screen: a blank chat now
    toast = page.get_by_role("status").filter(has_text="Deleted")
    expect(toast).to_contain_text("Deleted “My export”.")
    toast.get_by_role("button", name="Undo").click()
    expect(page.locator(".conversation-item")).to_have_count(1)
    assert conversation(page) == [["user", "export me"], ["assistant", "Noted: export me (1)"]]

    page.set_input_files("#import-file", str(path))  # the same file again: imported as a copy
    expect(page.locator(".conversation-item")).to_have_count(2)
    assert sidebar_titles(page) == ["My export", "My export"]
    assert conversation(page) == [["user", "export me"], ["assistant", "Noted: export me (1)"]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else", "messages": []}))
    page.set_input_files("#import-file", str(bad))
    expect(page.get_by_role("alert")).to_have_text('Could not import bad.json: "format" must be "nanochat-conversation".')
    expect(page.locator(".conversation-item")).to_have_count(2)


def test_new_conversation_can_be_undone_with_the_draft(page):
    page.get_by_role("button", name="New Conversation").click()  # on an empty chat: nothing to undo
    expect(page.locator("#toast")).to_be_hidden()
    send(page, "keep me")
    wait_idle(page)
    page.fill("#chat-input", "half-typed thought")
    page.get_by_role("button", name="New Conversation").click()
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator("#chat-input")).to_have_value("")
    toast = page.get_by_role("status").filter(has_text="Started a new conversation.")
    toast.get_by_role("button", name="Undo").click()
    assert conversation(page) == [["user", "keep me"], ["assistant", "Noted: keep me (1)"]]
    expect(page.locator("#chat-input")).to_have_value("half-typed thought")
    expect(toast).to_be_hidden()


def test_an_imported_conversation_continues_with_its_replies_sent_back_as_they_were(page, fake, tmp_path):
    parts = [{"type": "python", "text": "6*7"}, {"type": "python_output", "text": "42"},
             {"type": "text", "text": "It is 42."}]
    doc = {"format": "nanochat-conversation", "version": 1, "id": "c-handwritten", "title": "By hand",
           "messages": [
               {"id": "u1", "parent": None, "role": "user", "content": "What is 6*7?"},
               {"id": "a1", "parent": "u1", "role": "assistant", "content": parts, "finish": "stop"},
               {"id": "u2", "parent": "a1", "role": "user", "content": "And doubled?"}],
           "current": "u2"}
    path = tmp_path / "by-hand.json"
    path.write_text(json.dumps(doc))
    page.set_input_files("#import-file", str(path))
    expect(page.locator(".conversation-item")).to_have_count(1)
    expect(page.locator(".message.assistant .tool")).to_have_text(["calculator: 6*7", "= 42"])
    last = page.locator(".message.user").last
    n = len(fake.calls)
    last.hover()
    last.get_by_role("button", name="Answer this message").click()  # it has no reply yet
    wait_idle(page)
    messages = fake.calls[n][0]
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert [dict(p) for p in messages[1].content] == parts  # nanochat's parts, as they were
    expect(page.locator(".message.assistant").last).to_contain_text("Noted: And doubled? (3)")
    expect(last.get_by_role("button", name="Answer this message")).to_have_count(0)
