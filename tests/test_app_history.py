"""The full-screen app and saved conversations (issue 10 §3): saved as it goes in a real SQLite
file, resumed, listed / searched / opened / renamed / deleted / exported, branches from
regenerate and edit, deleting messages, prompt history across conversations, incognito."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from app_helpers import SIZE, bubbles, enter, make_app, notices, replies, screen_text, send, wait_for
from fake_backend import FakeBackend

from nanochat_core.chat import Message, SamplingParams
from nanochat_core.history import HistoryStore
from nanochat_tui.app import NanochatApp
from nanochat_tui.chat_session import open_session, start_conversation
from nanochat_tui.config import ChatConfig, HistorySettings
from nanochat_tui.widgets import AssistantMessage, ChatHeader, ConfirmScreen, ConversationsScreen, UserMessage


def store_of(app) -> HistoryStore:
    assert app.session.store is not None
    return app.session.store


def numbered(msgs) -> str:
    return f"reply #{len(msgs)}"


async def test_a_chat_is_saved_as_it_streams():
    backend = FakeBackend(reply="w " * 200, token_delay=0.01, fixed_stats=True)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "save me", wait=False)
        # while it streams, the reply is already in the database (partial, with what arrived)
        await wait_for(pilot, lambda: app.conversation.id is not None
                       and len(store_of(app).load(app.conversation.id).nodes) == 2
                       and store_of(app).load(app.conversation.id).path()[1].text.startswith("w w w"),
                       timeout=10, what="the partial reply to be saved")
        assert store_of(app).load(app.conversation.id).path()[1].state == "partial"
        await wait_for(pilot, lambda: not app.generating, timeout=20)
        saved = store_of(app).load(app.conversation.id)
        assert [(n.role, n.state) for n in saved.path()] == [("user", "done"), ("assistant", "done")]
        assert saved.path()[1].text == "w " * 200 and saved.path()[1].stats["generated_tokens"] == 201
        assert saved.title == "save me" and saved.model["name"] == backend.info.short_name


async def test_resume_shows_the_conversation_and_continues_it(tmp_path):
    settings = HistorySettings(path=str(tmp_path / "h.sqlite3"))
    backend = FakeBackend()
    first = NanochatApp(ChatConfig(history=settings), backend=backend, animate=False,
                        settings_path=tmp_path / "c.toml")
    async with first.run_test(size=SIZE) as pilot:
        await send(pilot, "remember the word kiwi")
    # -c: what run_tui does with --continue
    resumed = replace_history(settings, "latest")
    session = open_session(resumed)
    conversation = start_conversation(session, resumed, system=None, sampling=SamplingParams())
    app = NanochatApp(ChatConfig(history=resumed), backend=backend, session=session, conversation=conversation,
                      animate=False, settings_path=tmp_path / "c.toml")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert bubbles(app) == ["remember the word kiwi"]
        assert [r.text for r in replies(app)] == ["You said: remember the word kiwi"]
        assert any(n.startswith("Continuing “remember the word kiwi” (2 messages)") for n in notices(app))
        await send(pilot, "which word?")
        assert [m.text for m in backend.calls[-1][0]] == [
            "remember the word kiwi", "You said: remember the word kiwi", "which word?"]
        assert len(store_of(app).list()) == 1  # the same conversation, continued


def replace_history(settings: HistorySettings, resume: str) -> HistorySettings:
    from dataclasses import replace

    return replace(settings, resume=resume)


async def _two_conversations(pilot):
    app = pilot.app
    await send(pilot, "about apples")
    await app.new_conversation()
    await send(pilot, "about pears")
    await pilot.pause()


async def test_the_conversation_list_searches_opens_renames_and_deletes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(FakeBackend(), home=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _two_conversations(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        screen = app.screen
        text = screen_text(app)
        assert "about pears" in text and "about apples" in text and "● about pears" in text
        # search by text (in any message): the replies say "You said: about apples"
        screen.query_one("#search").value = "apples"
        await pilot.pause()
        assert [row.title for row in screen.rows] == ["about apples"]
        screen.query_one("#search").value = ""
        await pilot.pause()
        # export the highlighted one (the newest: pears) as Markdown
        screen.query_one("ConversationList").focus()
        await pilot.press("m")
        await pilot.pause()
        exported = tmp_path / "nanochat-about-pears.md"
        assert exported.exists() and "## You\n\nabout pears" in exported.read_text()
        # rename the second (apples)
        await pilot.press("down", "r")
        await pilot.pause()
        rename = app.screen
        rename.query_one("#title").value = "Fruit talk"
        await pilot.press("enter")
        await pilot.pause()
        # (renaming counts as a change: it is now the most recent, and still highlighted)
        assert [row.title for row in screen.rows] == ["Fruit talk", "about pears"]
        assert screen.query_one("ConversationList").highlighted == 0
        # open it: the chat shows it
        await pilot.press("enter")
        await wait_for(pilot, lambda: bubbles(app) == ["about apples"])
        assert app.conversation.title == "Fruit talk" and app.input.has_focus
        await send(pilot, "more")
        assert store_of(app).load(app.conversation.id).title == "Fruit talk"  # the new title stays
        # delete the other one, with confirmation
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        screen = app.screen
        pears = next(i for i, row in enumerate(screen.rows) if row.title == "about pears")
        screen.query_one("ConversationList").highlighted = pears
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # no: kept
        await pilot.pause()
        assert len(store_of(app).list()) == 2
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: len(store_of(app).list()) == 1)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConversationsScreen) and bubbles(app) == ["about apples", "more"]


async def test_deleting_the_open_conversation_starts_a_new_one():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "doomed")
        doomed = app.conversation.id
        await app.delete_conversation(doomed)
        await pilot.pause()
        assert app.conversation.id is None and not bubbles(app) and store_of(app).list() == []
        await send(pilot, "fresh")
        assert [row.title for row in store_of(app).list()] == ["fresh"]


async def test_export_command_writes_markdown_or_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/export")
        await pilot.pause()
        assert app.banner.message == "Nothing to export yet"
        await send(pilot, "Hello there!")
        await enter(pilot, "/export")
        await pilot.pause()
        md = tmp_path / "nanochat-hello-there.md"
        assert md.read_text().startswith("# Hello there!") and f"Exported to {md}" in notices(app)
        await enter(pilot, "/export json out.json")
        await pilot.pause()
        data = json.loads((tmp_path / "out.json").read_text())
        assert data["format"] == "nanochat-tui.conversation"
        assert [m["content"] for m in data["messages"]] == ["Hello there!", "You said: Hello there!"]
        await enter(pilot, "/export")  # the default name is taken: a new one, nothing overwritten
        await pilot.pause()
        assert (tmp_path / "nanochat-hello-there-2.md").exists()


async def test_regenerate_keeps_versions_that_can_be_switched_and_saved():
    backend = FakeBackend(reply=numbered)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "question")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) == 2 and not app.generating)
        await pilot.pause()
        assert [r.text for r in replies(app)] == ["reply #1"] or [r.text for r in replies(app)] == ["reply #2"]
        assert replies(app)[0].versions == (2, 2)
        # select the reply and switch versions with Left / Right
        await pilot.press("shift+tab")
        await pilot.pause()
        assert isinstance(app.focused, AssistantMessage)
        await pilot.press("left")
        await pilot.pause()
        assert replies(app)[0].versions == (1, 2) and "‹ 1/2 ›" in screen_text(app)
        assert isinstance(app.focused, AssistantMessage)  # the selection stays on the message
        saved = store_of(app).load(app.conversation.id)
        assert saved.path()[-1].id == replies(app)[0].node_id  # the version on screen is saved as such
        await pilot.press("right")
        await pilot.pause()
        assert replies(app)[0].versions == (2, 2)
        # the next message continues from the version on screen
        await pilot.press("escape")
        shown = replies(app)[0].text
        await send(pilot, "next")
        assert [m.text for m in backend.calls[-1][0]] == ["question", shown, "next"]


async def test_editing_an_earlier_message_makes_a_branch_and_the_old_one_stays():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "one")
        await send(pilot, "two")
        # select the first message: Shift+Tab, then Up three times (reply, "two", reply, "one")
        await pilot.press("shift+tab", "up", "up", "up")
        await pilot.pause()
        assert isinstance(app.focused, UserMessage) and app.focused.text == "one"
        await pilot.press("e")
        await pilot.pause()
        assert app.input.has_focus and app.input.text == "one"
        assert bubbles(app) == ["one", "two"]  # nothing removed yet
        app.input.clear()
        app.input.insert("uno")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.generating and len(backend.calls) == 3)
        await pilot.pause()
        assert bubbles(app) == ["uno"] and backend.calls[-1][0] == [Message("user", "uno")]
        first = list(app.query(UserMessage))[0]
        assert first.versions == (2, 2)
        # the old branch ("one", "two" and their replies) is one Left away
        first.focus()
        await pilot.press("left")
        await pilot.pause()
        assert bubbles(app) == ["one", "two"] and len(replies(app)) == 2


async def test_deleting_a_message_asks_then_removes_it_and_what_follows():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "keep")
        await send(pilot, "drop")
        await pilot.press("shift+tab", "up")  # "drop"
        await pilot.pause()
        assert app.focused.text == "drop"
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "and the 1 message after it" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: bubbles(app) == ["keep"])
        saved = store_of(app).load(app.conversation.id)
        assert [n.text for n in saved.path()] == ["keep", "You said: keep"] and len(saved.nodes) == 2


async def test_up_recalls_earlier_prompts_of_this_and_saved_conversations(tmp_path):
    backend = FakeBackend()
    first = make_app(backend, home=tmp_path)
    async with first.run_test(size=SIZE) as pilot:
        await send(pilot, "from an earlier chat")
    app = make_app(backend, home=tmp_path)  # a new session on the same history
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "line one\nline two")
        await send(pilot, "latest")
        app.input.insert("")  # empty input
        await pilot.press("up")
        assert app.input.text == "latest"
        await pilot.press("up")
        assert app.input.text == "line one\nline two"
        # inside a recalled multi-line prompt Up first moves the cursor, then goes further back
        await pilot.press("up")
        assert app.input.text == "line one\nline two" and app.input.cursor_location[0] == 0
        await pilot.press("up")
        assert app.input.text == "from an earlier chat"
        await pilot.press("up")  # nothing older: it stays
        assert app.input.text == "from an earlier chat"
        await pilot.press("down")
        assert app.input.text == "line one\nline two"  # (the cursor is on its last line)
        await pilot.press("down")
        assert app.input.text == "latest"
        await pilot.press("down")  # past the newest: the (empty) draft again
        assert app.input.text == ""
        # nothing was sent or edited by walking
        assert bubbles(app) == ["line one\nline two", "latest"] and len(backend.calls) == 3


async def test_incognito_and_unavailable_history_are_said():
    app = make_app(history=HistorySettings(enabled=False))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "incognito: not saved" in screen_text(app).splitlines()[0]
        await send(pilot, "secret")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        assert "Nothing is saved in this session: history is off (--no-history" in screen_text(app)
        await pilot.press("escape")
    folder = Path(tempfile.mkdtemp(dir=os.environ.get("NANOCHAT_TUI_TEST_ROOT")))
    (folder / "history.sqlite3").mkdir()  # not a file: the store cannot open it
    app = make_app(history=HistorySettings(path=str(folder / "history.sqlite3")))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "⚠ not saving" in screen_text(app).splitlines()[0]
        assert app.banner.visible and "this chat will not be saved" in app.banner.message
        await send(pilot, "still works")
        assert bubbles(app) == ["still works"]


async def test_header_new_conversation_keeps_the_old_one_saved():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first chat")
        await pilot.click("#new-chat")
        await pilot.pause()
        assert not bubbles(app) and app.query_one(ChatHeader)
        assert [row.title for row in store_of(app).list()] == ["first chat"]
