"""The full-screen app's conventions (issue 11): command palette, themes, settings, copying,
selecting messages, banners that go when their cause goes, following the stream, emoji widths.
Key handling in a real terminal is in tests/test_tui_tmux.py."""

from __future__ import annotations

import threading
import tomllib

import pytest
from app_helpers import SIZE, bubbles, enter, make_app, notices, replies, screen_text, send, wait_for
from fake_backend import FakeBackend, FakeSelection

from nanochat_core.chat import SamplingParams
from nanochat_tui import commands as sc
from nanochat_tui.app import BUSY_MESSAGE, NanochatApp
from nanochat_tui.clipboard import clipboard_caveat, copied_message
from nanochat_tui.config import ChatConfig, HistorySettings, ModelSelection
from nanochat_tui.widgets import AssistantMessage, ChatLog, InfoPanel, SettingsScreen, UserMessage
from nanochat_tui.widgets.cells import cell_safe

CODE = "Two blocks:\n\n```python\nprint(1)\n```\n\nand\n\n```sh\necho 2\n```\n"


# ---- one registry drives keys, footer, palette and help ----

def test_bindings_come_from_the_registry():
    bound: dict[str, list[str]] = {}
    for binding in NanochatApp.BINDINGS:
        bound.setdefault(binding.key, []).append(binding.action)
    for spec in sc.commands_for(sc.TUI):
        for key in spec.keys:
            assert bound[key][0] == f"command('{spec.name}')", key
    assert bound["ctrl+c"] == ["command('interrupt')"] and bound["ctrl+o"] == ["command('conversations')"]
    # every registry command the app offers is in the palette, /help or a message's keys
    for spec in sc.commands_for(sc.TUI):
        assert spec.palette or spec.message_keys or spec.keys, spec.name


async def test_the_palette_lists_every_command_and_runs_them():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello")
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        text = screen_text(app)
        for title in ("New chat", "Conversations", "Stop the reply", "Regenerate the last reply",
                      "Edit your last message", "Copy the last reply"):
            assert title in text, title
        await pilot.press(*"new chat")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not bubbles(app), what="a new chat")
        assert notices(app) == ["New conversation"]


async def test_palette_titles_cover_the_issue_list():
    titles = " | ".join(spec.palette_title.lower() for spec in sc.commands_for(sc.TUI) if spec.palette)
    for word in ("new chat", "conversations", "copy", "regenerate", "edit", "stop", "settings", "theme",
                 "model", "system message", "export", "help", "quit"):
        assert word in titles, word


async def test_palette_puts_commands_that_take_a_value_in_the_input():
    app = make_app(system="Be kind.")
    async with app.run_test(size=SIZE) as pilot:
        await app.palette_command("temperature")
        await pilot.pause()
        assert app.input.text == "/temperature " and notices(app)[-1].startswith("temperature is 0.6")
        await app.palette_command("system")
        await pilot.pause()
        assert app.input.text == "/system Be kind."


# ---- themes and settings ----

async def test_theme_command_sets_and_remembers_the_theme(tmp_path):
    app = make_app(home=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/theme nord")
        await pilot.pause(0.2)
        assert app.theme == "nord"
        await wait_for(pilot, lambda: (tmp_path / "config.toml").exists())
        assert tomllib.loads((tmp_path / "config.toml").read_text())["theme"] == "nord"
        await enter(pilot, "/theme plaid")
        await pilot.pause()
        assert app.banner.message.startswith("No theme 'plaid': choose one of") and app.theme == "nord"
    # the next start uses it
    app = make_app(home=tmp_path, theme="nord")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "nord"


async def test_theme_without_a_name_opens_the_theme_list():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/theme")
        await pilot.pause(0.3)
        assert "Search for themes" in screen_text(app)


async def test_settings_screen_applies_or_saves_as_defaults(tmp_path):
    app = make_app(home=tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await enter(pilot, "/settings")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        screen.query_one("#top_k").value = "300"
        await pilot.click("#apply")
        await pilot.pause()
        assert "top-k must be between 0 and 200" in str(screen.query_one("#settings-error").content)
        assert isinstance(app.screen, SettingsScreen)  # refused: nothing applied
        screen.query_one("#top_k").value = "7"
        screen.query_one("#temperature").value = "0.25"
        screen.query_one("#system").load_text("Answer in French.")
        await pilot.click("#save")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert (app.sampling.top_k, app.sampling.temperature, app.system) == (7, 0.25, "Answer in French.")
        saved = tomllib.loads((tmp_path / "config.toml").read_text())
        assert saved["top_k"] == 7 and saved["temperature"] == 0.25 and saved["system"] == "Answer in French."
        await send(pilot, "hi")
        assert app.backend.calls[-1][1].top_k == 7 and app.backend.calls[-1][0][0].text == "Answer in French."


# ---- copying ----

async def test_copy_the_last_reply_or_a_code_block(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-kitty")
    monkeypatch.delenv("TMUX", raising=False)
    app = make_app(FakeBackend(reply=CODE))
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/copy")
        await pilot.pause()
        assert app.banner.message == "Nothing to copy yet"
        await send(pilot, "show me code")
        await enter(pilot, "/copy")
        await pilot.pause()
        assert app._clipboard == CODE
        assert any(n.message == f"Copied the reply ({len(CODE)} characters)" for n in app._notifications)
        await enter(pilot, "/copy code")
        await pilot.pause()
        assert app._clipboard == "echo 2\n"  # the last block
        # on the selected message, b copies its blocks in turn
        await pilot.press("shift+tab", "b")
        assert app._clipboard == "print(1)\n"
        await pilot.press("b")
        assert app._clipboard == "echo 2\n"
        await pilot.press("up", "c")  # the user's own message
        assert app._clipboard == "show me code"


def test_copy_messages_say_when_the_terminal_may_not_copy():
    assert clipboard_caveat({"TERM": "xterm-kitty"}) == ""
    assert "set-clipboard on" in clipboard_caveat({"TERM": "tmux-256color", "TMUX": "/tmp/x"})
    assert "macOS Terminal" in clipboard_caveat({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"})
    assert "OSC 52" in clipboard_caveat({"TERM": "xterm"})
    assert copied_message("the reply", "abc", {"TERM": "xterm"}).startswith("Copied the reply (3 characters); if nothing")


# ---- selecting messages ----

async def test_messages_are_walked_with_the_keyboard_and_show_their_keys():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("shift+tab")
        await pilot.pause()
        assert app.input.has_focus  # nothing to select yet
        await send(pilot, "one")
        await send(pilot, "two")
        await pilot.press("ctrl+up")
        await pilot.pause()
        assert isinstance(app.focused, AssistantMessage) and app.focused.text == "You said: two"
        footer = screen_text(app).splitlines()[-1]
        for label in ("c Copy", "e Edit", "r Regenerate", "d Delete", "←→ Version"):
            assert label in footer, (label, footer)
        await pilot.press("up")
        assert isinstance(app.focused, UserMessage) and app.focused.text == "two"
        await pilot.press("home")
        assert app.focused.text == "one"
        await pilot.press("end", "down")
        assert app.focused.text == "You said: two"
        await pilot.press("escape")
        assert app.input.has_focus
        # r on a selected earlier reply regenerates that one (a new version there)
        await pilot.press("shift+tab", "up", "up", "r")
        await wait_for(pilot, lambda: not app.generating and len(app.backend.calls) == 3)
        await pilot.pause()
        assert bubbles(app) == ["one"] and replies(app)[0].versions == (2, 2)


# ---- banners go when their cause goes ----

async def test_busy_banner_goes_when_the_reply_ends():
    app = make_app(FakeBackend(reply="tok " * 60, token_delay=0.02))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first", wait=False)
        await wait_for(pilot, lambda: app.generating)
        await enter(pilot, "second")
        await pilot.pause()
        assert app.banner.message == BUSY_MESSAGE
        await wait_for(pilot, lambda: not app.generating, timeout=10)
        await pilot.pause()
        assert not app.banner.visible and app.input.text == "second"


async def test_nothing_to_regenerate_goes_once_there_is_something():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.banner.message == "Nothing to regenerate yet"
        app.input.insert("h")
        await pilot.pause()
        assert not app.banner.visible


async def test_loading_banner_goes_when_the_model_is_ready():
    import threading

    gate = threading.Event()
    app = NanochatApp(ChatConfig(model=FakeSelection(gate=gate), history=HistorySettings(enabled=False)),
                      animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "early")
        await pilot.pause()
        assert "still loading" in app.banner.message
        gate.set()
        await wait_for(pilot, lambda: app.backend is not None)
        await pilot.pause()
        assert not app.banner.visible and app.input.text == "early"


# ---- // sends a slash ----

async def test_a_double_slash_sends_a_message_starting_with_a_slash():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "//tmp is full")
        assert bubbles(app) == ["/tmp is full"] and backend.calls[0][0][-1].text == "/tmp is full"
        await enter(pilot, "/tmp")
        await pilot.pause()
        assert "//tmp to send it as a message" in app.banner.message


# ---- following the stream ----

async def _stream_paused_with_pages(pilot, flowing):
    """A reply that streamed a few pages, then paused (so what follows is deterministic)."""
    app = pilot.app
    log = app.query_one(ChatLog)
    await send(pilot, "long", wait=False)
    await wait_for(pilot, lambda: log.max_scroll_y > 60, timeout=20, what="a few pages")
    flowing.clear()
    await pilot.pause(0.3)
    return log


async def _with_a_growing_reply(scenario) -> None:
    """Run `scenario(pilot, flowing)` on an app streaming a long reply through a tap the
    scenario can close and open."""
    flowing = threading.Event()
    flowing.set()
    app = make_app(FakeBackend(reply="line\n\n" * 3000, token_delay=0.005, flowing=flowing),
                   sampling=SamplingParams(max_tokens=4096))
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await scenario(pilot, flowing)
        finally:
            flowing.set()  # (never leave the fake engine paused: the app could not end)
            await app._settle()  # (and let the reply end before the app does)


async def _keeps_following(pilot, log, flowing) -> None:
    """Let the reply go on: the view stays at its end as it grows."""
    flowing.set()
    grown = log.max_scroll_y
    await wait_for(pilot, lambda: log.max_scroll_y > grown + 10, timeout=10)
    await wait_for(pilot, lambda: log.scroll_y >= log.max_scroll_y - 2, what="the view at the end")


async def test_paging_down_to_the_bottom_while_the_reply_grows_follows_again():
    """PageDown aims at the bottom, and before it lands (after the next refresh) more of the reply
    arrives: the view must follow the reply, not stop a few lines above its end."""
    await _with_a_growing_reply(_paging_down_while_it_grows)


async def _paging_down_while_it_grows(pilot, flowing) -> None:
    app = pilot.app
    log = await _stream_paused_with_pages(pilot, flowing)
    await pilot.press("pageup", "pageup")
    await pilot.pause(0.2)
    assert not log.following
    page = log.scrollable_content_region.height
    while log.scroll_y + page * 1.5 < log.max_scroll_y:  # within a page of the end
        await pilot.press("pagedown")
        await pilot.pause(0.05)
    assert log.scroll_y < log.max_scroll_y
    app.action_scroll_log(1)  # PageDown, and in the same moment the reply grows:
    await app._current.widget.append("more\n\n" * 40)
    await wait_for(pilot, lambda: log.following and log.scroll_y == log.max_scroll_y,
                   what="the view to land at the new end")
    await _keeps_following(pilot, log, flowing)  # and it keeps following as the reply goes on


async def test_a_resize_while_scrolled_up_then_back_to_the_bottom_follows():
    await _with_a_growing_reply(_resize_then_back_down)


async def _resize_then_back_down(pilot, flowing) -> None:
    log = await _stream_paused_with_pages(pilot, flowing)
    await pilot.press("pageup")
    await pilot.pause(0.2)
    await pilot.resize_terminal(60, 20)
    await pilot.pause(0.3)
    assert not log.following
    for _ in range(40):
        await pilot.press("pagedown")
        await pilot.pause(0.05)
        if log.following:
            break
    assert log.following
    await _keeps_following(pilot, log, flowing)


# ---- emoji ----

@pytest.mark.parametrize("text, shown", [
    ("family 👨‍👩‍👧 ok", "family 👨👩👧 ok"),
    ("thumbs 👍🏽", "thumbs 👍"),
    ("heart ❤️", "heart ❤"),
    ("coder 👩🏽‍💻", "coder 👩💻"),
    ("plain text", "plain text"),
    ("flag 🇫🇷 and é", "flag 🇫🇷 and é"),
])
def test_emoji_sequences_are_drawn_as_parts_every_terminal_measures_alike(text, shown):
    assert cell_safe(text) == shown


async def test_emoji_in_replies_are_drawn_safely_but_kept_in_the_conversation():
    reply = "Great 👍🏽 family 👨‍👩‍👧"
    app = make_app(FakeBackend(reply=reply))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi 👋🏿")
        text = screen_text(app)
        assert "Great 👍 family 👨👩👧" in text and "hi 👋" in text
        assert app.conversation.last.text == reply  # the conversation keeps what was written
        await enter(pilot, "/copy")
        await pilot.pause()
        assert app._clipboard == reply


# ---- /model ----

async def test_model_command_in_client_mode_shows_the_model_and_its_identity():
    # (with local checkpoints /model opens the picker: tests/test_app_models.py)
    app = make_app(model=ModelSelection(server="http://gpu-box:8000/v1"))
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/model")
        await pilot.pause()
        panel = list(app.query(InfoPanel))[-1]
        rows = dict(panel.sections[0][1])
        assert rows["loaded"] == app.backend.info.describe()
        assert rows["generation"] == "gen5-smear-backout" and rows["step"] == "700"
        assert "--model ID" in rows["another"]
