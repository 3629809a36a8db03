"""The full-screen chat, driven by Textual's Pilot: every flow of issue 3 against a fake engine
(tests/fake_backend.py, the real ChatModel's interface and the real rulebook), then on a real
fixture checkpoint and the bundled demo model."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
from app_helpers import SIZE, bubbles, enter, make_app, notices, replies, screen_text, send, type_text, wait_for
from conftest import FIXTURES
from fake_backend import FakeBackend, FakeSelection, fake_info, split_tokens

from nanochat_core.chat import Message, SamplingParams
from nanochat_core.events import TextDelta, ToolCall, ToolResult
from nanochat_tui import commands as sc
from nanochat_tui.app import BUSY_MESSAGE, GOODBYE, NanochatApp
from nanochat_tui.config import ChatConfig, HistorySettings, ModelSelection
from nanochat_tui.widgets import (
    ChatHeader,
    ChatLog,
    InfoPanel,
    Notice,
    ToolCallView,
    TypingIndicator,
    UserMessage,
)

SUMMARY_RE = re.compile(r"^\d+ tokens? · \d+\.\d tok/s · first token \d+ ms")
GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
DEFAULTS = ChatConfig().sampling
NO_HISTORY = HistorySettings(enabled=False)


# ---- start-up ----

async def test_loads_in_a_worker_with_progress_then_ready():
    backend = FakeBackend(info=fake_info(device="cuda", dtype="bfloat16"))
    gate = threading.Event()
    selection = FakeSelection(backend, gate=gate)
    app = NanochatApp(ChatConfig(model=selection, history=NO_HISTORY), animate=False)
    async with app.run_test(size=SIZE) as pilot:
        # the screen is up while the model loads, with the stages so far
        await wait_for(pilot, lambda: "Loading weights /fake/model_000700.pt" in notices(app))
        assert app.backend is None
        assert app.status.text == "Loading weights /fake/model_000700.pt"
        assert "loading model…" in screen_text(app)
        gate.set()
        await wait_for(pilot, lambda: app.backend is backend, what="the model to load")
        await pilot.pause()
        lines = notices(app)
        assert "Looking for sft checkpoints in /fake" in lines
        assert "Loading weights /fake/model_000700.pt" in lines
        assert any(line.startswith("Ready: d4 · sft step 700") for line in lines)
        header = app.query_one(ChatHeader)
        text = screen_text(app)
        assert "nanochat" in text and "d4 · sft step 700 · gen5-smear-backout" in text
        assert "cuda · bfloat16" in text and "New conversation" in text
        assert header.query_one("#model-name").content == backend.info.short_name
        assert app.status.text.startswith("Ready")
        assert selection.loads == 1


async def test_demo_model_name_in_header():
    backend = FakeBackend(info=fake_info(is_demo=True, source="demo", model_tag="d2"))
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "demo model (d2, gen5-smear-backout)" in screen_text(app)


async def test_load_failure_shows_one_line_not_a_traceback(tmp_path):
    # the real loader on an empty directory: a real CheckpointError
    selection = ModelSelection(base_dir=str(tmp_path), explicit=True, device_type="cpu")
    app = NanochatApp(ChatConfig(model=selection, history=NO_HISTORY), animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None, timeout=60, what="the load error")
        await pilot.pause()
        assert app.backend is None
        assert str(tmp_path) in app.load_error and "\n" not in app.load_error
        assert app.banner.visible and app.banner.message == app.load_error
        assert any(n.startswith("Could not load the model:") for n in notices(app))
        assert "Traceback" not in screen_text(app)
        # sending is refused with the reason, and the text stays
        await enter(pilot, "hi")
        await pilot.pause()
        assert app.input.text == "hi" and app.banner.message == app.load_error


async def test_unexpected_load_exception_is_one_line():
    app = NanochatApp(ChatConfig(model=FakeSelection(error=RuntimeError("disk on fire\nsecond line")),
                                 history=NO_HISTORY), animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None)
        assert app.load_error == "RuntimeError: disk on fire"


# ---- send / stream / finish ----

async def test_send_streams_markdown_and_shows_stats():
    reply = "Here is code:\n\n```python\nprint('hi')\n```\n\n- one\n- two\n"
    backend = FakeBackend(reply=reply, token_delay=0.01)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "hello there")
        await pilot.pause()
        assert app.input.text == ""  # sent
        assert bubbles(app) == ["hello there"]
        await wait_for(pilot, lambda: not app.generating)
        await pilot.pause()
        (msg,) = replies(app)
        assert msg.text == reply and msg.stop_reason == "stop"
        # rendered as Markdown: a code block without its fence, bullets for the list
        text = screen_text(app)
        assert "print('hi')" in text and "```" not in text and "• one" in text and "• two" in text
        assert SUMMARY_RE.match(app.status.text), app.status.text
        assert app.status.text.startswith(f"{len(split_tokens(reply))} tokens")
        assert app.history == [Message("user", "hello there"), Message("assistant", reply)]
        assert backend.calls[0][0] == [Message("user", "hello there")]
        assert backend.calls[0][1] == DEFAULTS  # the config's defaults reach the engine
        # the second turn carries the history
        await send(pilot, "again")
        assert [m.text for m in backend.calls[1][0]] == ["hello there", reply, "again"]
        assert bubbles(app) == ["hello there", "again"]
        assert [r.text for r in replies(app)] == [reply, reply]


async def test_user_bubble_is_right_aligned_and_literal():
    app = make_app(FakeBackend(reply="ok"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "[bold]not markup[/bold]")
        line = next(line for line in screen_text(app).splitlines() if "not markup" in line)
        start = line.index("[bold]not markup[/bold]")
        assert start > 40 and len(line.rstrip()) >= SIZE[0] - 4  # right-aligned
        # a light gray bubble: the text sits on the bubble colour, one cell of padding around it
        strip = app.screen._compositor.render_strips()[app.query_one(UserMessage).region.y]
        cells = [(seg.text, seg.style) for seg in strip if seg.text.strip()]
        assert any(style.bgcolor and style.bgcolor.triplet == (0xD7, 0xD7, 0xD7) for _, style in cells)

        # long messages wrap inside a bubble at most 80% wide
        await send(pilot, "word " * 60)
        rows = [line for line in screen_text(app).splitlines() if "word word" in line]
        assert len(rows) >= 3
        for row in rows:
            assert row.index("word") >= SIZE[0] * 0.2 - 2


async def test_messages_reflow_when_the_terminal_is_resized():
    app = make_app(FakeBackend(reply="alpha beta gamma delta " * 6))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "a right-aligned bubble")
        wide = [line for line in screen_text(app).splitlines() if "alpha" in line]
        await pilot.resize_terminal(60, 32)
        await pilot.pause()
        text = screen_text(app)
        line = next(line for line in text.splitlines() if "a right-aligned bubble" in line)
        assert len(line.rstrip()) >= 56 and line.index("a right-aligned") > 25
        narrow = [line for line in text.splitlines() if "alpha" in line]
        assert len(narrow) > len(wide) and all(len(line.rstrip()) <= 60 for line in narrow)


async def test_typing_indicator_until_first_token_and_generating_state():
    flowing = threading.Event()  # the first token waits until the test lets it through
    backend = FakeBackend(reply="slow start", flowing=flowing)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi", wait=False)
        await wait_for(pilot, lambda: bool(replies(app)), what="the reply widget")
        msg = replies(app)[0]
        assert msg.waiting and len(msg.query(TypingIndicator)) == 1
        assert "Generating" in app.status.text
        frame1 = str(msg.query_one(TypingIndicator).content)
        await wait_for(pilot, lambda: str(msg.query_one(TypingIndicator).content) != frame1,
                       what="the typing indicator's next frame")
        assert msg.waiting  # no token has come yet: it animates while waiting
        flowing.set()
        await wait_for(pilot, lambda: not app.generating)
        await pilot.pause()
        assert not msg.waiting and len(msg.query(TypingIndicator)) == 0
        assert msg.text == "slow start"


async def test_tokens_reach_the_ui_in_batches():
    n = 400
    app = make_app(FakeBackend(reply="x " * n), sampling=SamplingParams(max_tokens=1000))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go")
        assert replies(app)[0].text == "x " * n
        assert app.flushes < n / 10, app.flushes  # not one UI update per token


async def test_model_text_cannot_inject_terminal_controls():
    app = make_app(FakeBackend(reply="red \x1b[31mALERT\x1b]0;pwned\x07 done\x9b2J"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        text = screen_text(app)
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "^[[31mALERT" in text
        assert "<U+009B>" in replies(app)[0].text


async def test_tool_calls_are_shown_distinctly():
    script = [TextDelta("Let me compute. "), ToolCall("2+2"), ToolResult("2+2", "4"),
              TextDelta("The answer is 4."), ToolCall("1/0"), ToolResult("1/0", None)]
    app = make_app(FakeBackend(script=script))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "what is 2+2")
        tools = list(app.query(ToolCallView))
        assert [t.expression for t in tools] == ["2+2", "1/0"]
        assert [t.result for t in tools] == ["4", None]
        text = screen_text(app)
        assert "calculator ▸ 2+2 = 4" in text and "calculator ▸ 1/0 = (no result)" in text
        msg = replies(app)[0]
        assert msg.segments == ["Let me compute. ", "The answer is 4."]
        parts = app.history[-1].content
        assert [p["type"] for p in parts] == ["text", "python", "python_output", "text", "python", "python_output"]


async def test_follows_the_stream_unless_scrolled_up():
    app = make_app(FakeBackend(reply="line\n\n" * 80, token_delay=0.003))
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(ChatLog)
        await send(pilot, "long please")
        await pilot.pause()
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        # scroll up, then another long reply: the view stays where the user put it
        await send(pilot, "more", wait=False)
        await pilot.pause(0.05)
        log.scroll_to(y=0, animate=False)
        log.release_anchor()
        await wait_for(pilot, lambda: not app.generating)
        await pilot.pause()
        assert log.scroll_y < log.max_scroll_y
        await pilot.press("pagedown")
        await pilot.pause()
        assert log.scroll_y > 0


async def test_long_replies_are_cut_into_markdown_chunks_at_block_boundaries():
    block = "Some words in a paragraph.\n\n```python\nx = 1\n\ny = 2\n```\n\n- item\n- item two\n\n"
    reply = block * 25  # ~1,750 characters, ~400 tokens
    app = make_app(FakeBackend(reply=reply, token_delay=0.0005), sampling=SamplingParams(max_tokens=1000))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "long")
        msg = replies(app)[0]
        sources = [c.source for c in msg.chunks]
        assert len(sources) >= 2 and "".join(sources) == reply
        for source in sources:
            assert source.count("```") % 2 == 0  # no code block is cut in two
        assert len(msg.children) == len(sources)  # one widget per chunk, not per block


@pytest.mark.parametrize("text, start, want", [
    ("para one\n\npara two", 0, 10),
    ("para one\n\npara two\n\npara three", 0, 20),
    ("para one\n\npara two\n\npara three", 21, None),
    ("```\ncode\n\nmore code\n```\n", 0, None),  # never inside a fence
    ("```\ncode\n```\n\nafter", 0, 14),
    ("- item\n\n  continued", 0, None),  # an indented continuation stays with its item
    ("text\n\n", 0, None),  # what comes next is not known yet
])
def test_safe_split(text, start, want):
    from nanochat_tui.widgets.messages import safe_split

    assert safe_split(text, start) == want


# ---- input ----

@pytest.mark.parametrize("key", ["ctrl+j", "shift+enter"])
async def test_newline_keys_insert_a_newline(key):
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await type_text(pilot, "first")
        await pilot.press(key)
        await type_text(pilot, "second")
        await pilot.pause()
        assert app.input.text == "first\nsecond"
        assert not backend.calls  # a newline key never sends
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.generating and bool(backend.calls))
        assert backend.calls[0][0][-1].content == "first\nsecond"
        assert bubbles(app) == ["first\nsecond"]


async def test_input_grows_up_to_eight_lines_then_scrolls():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.input
        await pilot.pause()
        assert prompt.placeholder == "Ask anything" and "Ask anything" in screen_text(app)
        one = prompt.outer_size.height
        await type_text(pilot, "a\nb\nc")
        await pilot.pause()
        assert prompt.outer_size.height == one + 2
        await type_text(pilot, "\nd\ne\nf\ng\nh\ni\nj\nk\nl")
        await pilot.pause()
        assert prompt.outer_size.height == 10  # 8 lines + border
        assert prompt.has_focus


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
async def test_empty_input_sends_nothing(text):
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        app.input.insert(text)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert not backend.calls and not bubbles(app) and not app.generating


async def test_enter_while_streaming_says_so_and_keeps_the_text():
    backend = FakeBackend(reply="tok " * 100, token_delay=0.02)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first", wait=False)
        await pilot.pause(0.1)
        assert app.generating
        await enter(pilot, "second")
        await pilot.pause()
        assert app.banner.visible and app.banner.message == BUSY_MESSAGE
        assert app.input.text == "second"
        assert len(backend.calls) == 1 and bubbles(app) == ["first"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating)
        assert backend.max_concurrent == 1


# ---- keys ----

@pytest.mark.parametrize("key", ["ctrl+n", "ctrl+shift+n", "ctrl+shift+N"])
async def test_new_conversation_keys(key):
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "remember me")
        assert app.history
        await pilot.press(key)
        await pilot.pause()
        assert app.history == [] and not bubbles(app) and not replies(app)
        assert notices(app) == ["New conversation"]
        await send(pilot, "fresh")
        assert backend.calls[-1][0] == [Message("user", "fresh")]


async def test_new_conversation_button_and_it_stops_a_running_reply():
    backend = FakeBackend(reply="word " * 200, token_delay=0.02)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go", wait=False)
        await wait_for(pilot, lambda: bool(replies(app)) and bool(replies(app)[0].text))
        await pilot.click("#new-chat")
        await pilot.pause()
        assert not replies(app) and not bubbles(app) and app.history == []
        assert not app.generating and app.input.has_focus
        await wait_for(pilot, lambda: backend.cancelled == 1, what="the engine to stop")
        await pilot.pause(0.1)
        assert not replies(app)  # nothing from the stopped stream leaks into the new conversation


async def test_escape_stops_the_engine_and_keeps_partial_text():
    backend = FakeBackend(reply=" ".join(f"w{i}" for i in range(300)), token_delay=0.02)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "talk a lot", wait=False)
        await wait_for(pilot, lambda: len(replies(app)[0].text) > 10)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating, timeout=2)
        await pilot.pause()
        msg = replies(app)[0]
        assert msg.stop_reason == "cancelled" and msg.has_class("-stopped")
        assert "■ stopped" in screen_text(app)
        assert backend.cancelled == 1
        partial = msg.text
        assert 10 < len(partial) < 300 * 4  # stopped early, text kept
        assert app.status.text.endswith("· stopped") and SUMMARY_RE.match(app.status.text)
        assert app.history[-1] == Message("assistant", partial)
        assert app.conversation.last.state == "stopped"
        await pilot.pause(0.2)
        assert msg.text == partial  # the engine really stopped


async def test_escape_when_idle_does_nothing_harmful_and_dismisses_banner():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/nope")
        await pilot.pause()
        assert app.banner.visible
        await pilot.press("escape")
        await pilot.pause()
        assert not app.banner.visible and app.input.text == "/nope"
        await pilot.press("escape")
        assert app.is_running


async def test_regenerate_replaces_the_last_reply_with_a_new_seed():
    backend = FakeBackend(reply=lambda msgs: f"reply #{len(backend.calls)}")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "question")
        assert [r.text for r in replies(app)] == ["reply #1"]
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) == 2 and not app.generating)
        await pilot.pause()
        assert [r.text for r in replies(app)] == ["reply #2"]
        assert bubbles(app) == ["question"]
        assert backend.calls[1][0] == [Message("user", "question")]
        assert backend.calls[1][1].seed != backend.calls[0][1].seed
        assert app.history == [Message("user", "question"), Message("assistant", "reply #2")]
        # the earlier reply is kept as a version: ‹ 2/2 ›, and ‹ 1/2 › shows it again
        assert "‹ 2/2 ›" in screen_text(app) and replies(app)[0].versions == (2, 2)
        await app.switch_version(None, -1)
        await pilot.pause()
        assert [r.text for r in replies(app)] == ["reply #1"] and "‹ 1/2 ›" in screen_text(app)


async def test_regenerate_with_nothing_says_so():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.banner.message == "Nothing to regenerate yet" and not backend.calls


async def test_edit_puts_the_last_message_back_and_removes_nothing_until_sent():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "first")
        await send(pilot, "secnd")
        assert bubbles(app) == ["first", "secnd"]
        await enter(pilot, "/edit")
        await pilot.pause()
        assert app.input.text == "secnd"
        # nothing is removed yet: both bubbles and both replies stay, the edited one is marked
        assert bubbles(app) == ["first", "secnd"] and len(replies(app)) == 2
        assert list(app.query(UserMessage))[-1].has_class("-editing")
        assert "Editing your message" in app.status.text
        # fix the typo: Up moves the cursor inside the text
        await pilot.press("up", "end", "left", "left", "o")
        assert app.input.text == "second"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(backend.calls) == 3 and not app.generating)
        assert [m.text for m in backend.calls[2][0]] == ["first", "You said: first", "second"]
        assert bubbles(app) == ["first", "second"]
        # the old message is a version of the new one
        assert list(app.query(UserMessage))[-1].versions == (2, 2) and "‹ 2/2 ›" in screen_text(app)


async def test_escape_cancels_an_edit_and_gives_back_the_draft():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "only message")
        app.input.insert("a draft")
        await app.edit()
        await pilot.pause()
        assert app.input.text == "only message" and app._editing is not None
        await pilot.press("escape")
        await pilot.pause()
        assert app.input.text == "a draft" and app._editing is None
        assert bubbles(app) == ["only message"] and len(app.conversation.nodes) == 2


async def test_up_in_a_non_empty_input_moves_the_cursor():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello")
        await type_text(pilot, "a\nb")
        await pilot.press("up")
        await pilot.pause()
        assert app.input.text == "a\nb" and app.input.cursor_location[0] == 0
        assert bubbles(app) == ["hello"]


async def test_ctrl_q_quits_at_once_and_the_reply_is_kept_as_stopped():
    backend = FakeBackend(reply="z " * 500, token_delay=0.01)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go", wait=False)
        await wait_for(pilot, lambda: bool(replies(app)) and len(replies(app)[0].text) > 4)
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_value is None and not app.is_running
    assert backend.cancelled == 1 or not backend.running.is_set()
    # quitting lost nothing: the partial reply is saved, marked stopped
    store = app.session.store
    saved = store.load(app.conversation.id)
    assert [n.role for n in saved.path()] == ["user", "assistant"]
    assert saved.path()[1].state == "stopped" and saved.path()[1].text.startswith("z z")


async def test_ctrl_c_stops_a_reply_and_twice_quits_when_idle():
    backend = FakeBackend(reply="z " * 500, token_delay=0.01)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go", wait=False)
        await wait_for(pilot, lambda: bool(replies(app)) and len(replies(app)[0].text) > 4)
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.generating)
        await pilot.pause()
        assert app.is_running and replies(app)[0].stop_reason == "cancelled" and backend.cancelled == 1
        # idle: the first Ctrl+C says how to quit, the second quits
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        assert any("Press Ctrl+C again to quit" in n.message for n in app._notifications)
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert not app.is_running


async def test_a_single_ctrl_c_does_not_quit_after_the_pause():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        app._quit_armed_until = 0  # (as if 2 s had passed)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running


# ---- typed commands ----

@pytest.mark.parametrize("word", ["quit", "exit", "  QUIT  "])
async def test_typed_quit_exits_with_goodbye(word):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, word)
        await pilot.pause()
    assert app.return_value == GOODBYE


@pytest.mark.parametrize("word", ["clear", "/clear", "/new"])
async def test_clear_commands_start_over(word):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello")
        await enter(pilot, word)
        await pilot.pause()
        assert app.history == [] and not bubbles(app) and app.input.text == ""
        assert notices(app) == ["New conversation"]


async def test_help_lists_keys_and_commands():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, "/help")
        await pilot.pause()
        panel = app.query_one(InfoPanel)
        for needle in ("Ctrl+Shift+N", "Ctrl+N", "Esc", "Ctrl+R", "Ctrl+J", "Ctrl+Q", "Ctrl+C", "Ctrl+O",
                       "Ctrl+P", "Shift+Tab", "/temperature", "/topk", "/max-tokens", "/system", "/stats",
                       "/clear", "/copy", "/export", "/theme", "/settings", "/history", "/model", "/edit"):
            assert needle in panel.text, needle
        assert app.input.text == ""
        # F1 shows it too
        await pilot.press("f1")
        await pilot.pause()
        assert len(app.query(InfoPanel)) == 2


@pytest.mark.parametrize("command, field, value, answer", [
    ("/temperature 0.3", "temperature", 0.3, "temperature set to 0.3"),
    ("/temperature 0", "temperature", 0.0, "temperature set to 0"),
    ("/topk 7", "top_k", 7, "top-k set to 7"),
    ("/top-k 0", "top_k", 0, "top-k set to 0 (full vocabulary)"),
    ("/max-tokens 3", "max_tokens", 3, "max tokens set to 3"),
])
async def test_sampling_commands_reach_the_engine(command, field, value, answer):
    backend = FakeBackend(reply="one two three four five")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, command)
        await pilot.pause()
        assert notices(app)[-1] == answer and app.input.text == "" and not app.banner.visible
        await send(pilot, "go")
        assert getattr(backend.calls[0][1], field) == value
        if field == "max_tokens":
            assert replies(app)[0].text == "one two three"
            assert "max tokens reached" in app.status.text and "max tokens reached" in screen_text(app)


@pytest.mark.parametrize("command, words", [
    ("/temperature 5", "Temperature must be between 0.0 and 2.0"),
    ("/temperature warm", "Temperature must be a number, not 'warm'"),
    ("/topk 300", "top-k must be between 0 and 200"),
    ("/topk 2.5", "top-k must be an integer, not '2.5'"),
    ("/max-tokens 0", "max tokens must be between 1 and 4096"),
    ("/max-tokens 5000", "max tokens must be between 1 and 4096"),
    ("/frobnicate", "Unknown command /frobnicate: type /help for the list, or //frobnicate to send it as a message"),
])
async def test_bad_command_values_show_rulebook_words_and_keep_the_text(command, words):
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await enter(pilot, command)
        await pilot.pause()
        assert app.banner.visible and app.banner.message == words
        assert app.input.text == command
        assert app.sampling == DEFAULTS and not backend.calls
        assert f"⚠ {words}" in screen_text(app)
        # the banner sits below the input
        assert app.banner.region.y > app.input.region.y


async def test_commands_without_value_show_the_current_setting():
    app = make_app(sampling=SamplingParams(temperature=0.9, top_k=0, max_tokens=77))
    async with app.run_test(size=SIZE) as pilot:
        for command in ("/temperature", "/topk", "/max-tokens", "/system"):
            await enter(pilot, command)
            await pilot.pause()
        assert notices(app)[-4:] == [
            "temperature is 0.9 (range 0.0-2.0; 0 = greedy)",
            "top-k is 0 (range 0-200; 0 = full vocabulary)",
            "max tokens is 77 (range 1-4096)",
            "no system message (set one with /system TEXT)",
        ]


async def test_system_command_sets_shows_and_removes_the_system_message():
    backend = FakeBackend()
    app = make_app(backend, system="from the flag")
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "one")
        assert backend.calls[0][0][0] == Message("system", "from the flag")
        await enter(pilot, "/system Be terse.")
        await send(pilot, "two")
        assert backend.calls[1][0][0] == Message("system", "Be terse.")
        await enter(pilot, "/system")
        await pilot.pause()
        assert notices(app)[-1] == "system message: Be terse."
        await enter(pilot, "/system off")
        await send(pilot, "three")
        assert backend.calls[2][0][0] == Message("user", "one")


async def test_stats_shows_model_settings_launch_options_and_last_reply():
    backend = FakeBackend(fixed_stats=True)
    config = ChatConfig(model=ModelSelection(base_dir="/models/here", model_tag="d20", softcap=20.0),
                        sampling=SamplingParams(temperature=0.2, top_k=9, max_tokens=99, seed=7),
                        system="Be kind.")
    app = NanochatApp(config, backend=backend, animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        await enter(pilot, "/stats")
        await pilot.pause()
        text = app.query_one(InfoPanel).text
        assert backend.info.describe() in text
        for label, value in (("temperature", "0.2"), ("top-k", "9"), ("max tokens", "99"), ("seed", "7")):
            assert re.search(rf"^  {label} +{value}$", text, re.M), (label, value)
        for needle in ("'Be kind.'", "2 messages", "3 tokens · 100.0 tok/s · first token 12 ms"):
            assert needle in text, needle
        # how the app was started, as flags (defaults left out), and the system message as set
        launch = re.search(r"^  launch +(.*)$", text, re.M).group(1)
        assert launch == "--model-dir /models/here -g d20 --softcap 20 -t 0.2 -k 9 -m 99 --seed 7 --system …"
        assert "system=False" not in text and "device_type" not in text
        # long rows wrap inside their own column (the table keeps the indentation)
        await pilot.resize_terminal(60, 40)
        await pilot.pause()
        lines = screen_text(app).splitlines()
        start = next(i for i, line in enumerate(lines) if "model " in line and "d4 · sft" in line)
        column = lines[start].index("d4 · sft")
        assert lines[start + 1][:column].strip(" ▌█") == ""  # the continuation starts in the value column


# ---- errors ----

async def test_validation_error_banner_keeps_the_text():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        long = "x" * 8001
        app.input.insert(long)
        await pilot.press("enter")
        await pilot.pause()
        # the rulebook's words, then which message and its length in the user's words
        assert app.banner.message == ("Message 0 is too long. Maximum 8000 characters allowed per message "
                                      "(your message, 8,001 characters)")
        assert app.input.text == long and not backend.calls and not bubbles(app)
        # clearing the input takes the banner down (its cause is gone)
        app.input.clear()
        await pilot.pause()
        assert not app.banner.visible
        await send(pilot, "short")
        assert not app.banner.visible and bubbles(app) == ["short"]


async def test_an_engine_error_after_some_text_keeps_the_reply_marked_failed_in_the_conversation():
    backend = FakeBackend(reply="partial text here", error="CUDA out of memory")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "explain everything")
        assert app.banner.message == "CUDA out of memory"
        # the bubble and the reply ARE the conversation: the reply is marked failed, not dropped
        assert bubbles(app) == ["explain everything"] and replies(app)[0].text == "partial"
        assert "⚠ failed: CUDA out of memory" in screen_text(app)
        last = app.conversation.last
        assert last.role == "assistant" and last.state == "error" and last.error == "CUDA out of memory"
        saved = app.session.store.load(app.conversation.id)
        assert [n.state for n in saved.path()] == ["done", "error"]
        # the failed exchange is left out of what the model sees next
        backend.error = None
        await send(pilot, "again")
        assert backend.calls[-1][0] == [Message("user", "again")]


async def test_an_engine_error_before_any_text_gives_the_message_back():
    app = make_app(FakeBackend(raise_exc=RuntimeError("kaboom")))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hi")
        assert app.banner.message == "RuntimeError: kaboom" and app.is_running
        # the exchange never happened: the text is back in the input, nothing on screen or saved
        assert app.input.text == "hi" and not bubbles(app) and not replies(app)
        assert not app.conversation.nodes and app.conversation.id is None
        assert app.session.store.list() == []


# ---- scale ----

async def test_hundreds_of_messages_are_folded_into_archives_and_stay_responsive():
    app = make_app(FakeBackend(reply="ok"))
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(ChatLog)
        widgets = []
        for i in range(200):
            widgets.append(UserMessage(f"message {i}"))
            widgets.append(Notice(f"reply {i}"))
        await log.add(*widgets)
        await pilot.pause()
        # 400 messages, but a few dozen widgets: the oldest are folded into archives
        assert log.archived >= 300 and len(log.children) < 100
        assert len(list(log.query(UserMessage))) + len(list(log.query(Notice))) <= 80
        start = time.perf_counter()
        await send(pilot, "still fast?")
        elapsed = time.perf_counter() - start
        assert replies(app)[0].text == "ok"
        assert elapsed < 2.0, elapsed
        assert log.scroll_y == log.max_scroll_y
        # the archived messages still show, looking as they did
        log.scroll_home(animate=False)
        await pilot.pause()
        text = screen_text(app)
        assert "message 0" in text and "reply 0" in text
        line = next(line for line in text.splitlines() if "message 0" in line)
        assert line.index("message 0") > 60  # still a right-aligned bubble


async def test_a_reply_in_flight_and_the_last_messages_are_never_folded():
    backend = FakeBackend(reply="w " * 100, token_delay=0.01)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(ChatLog)
        await send(pilot, "first")
        await send(pilot, "go", wait=False)
        await wait_for(pilot, lambda: bool(replies(app)) and len(replies(app)[-1].text) > 4)
        await log.add(*[Notice(f"n{i}") for i in range(150)])  # while the reply streams
        assert log.archived == 3  # "Ready", "first" and its reply; the rest is after "go"
        assert app.generating and replies(app)[-1].is_mounted
        await wait_for(pilot, lambda: not app.generating)
        await log.add(Notice("one more"))
        assert log.archived == 3 and bubbles(app) == ["go"]
        assert replies(app)[-1].text == "w " * 100 and replies(app)[-1].stop_reason == "stop"
        # edit-last and regenerate still work on the last exchange
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) == 3 and not app.generating)
        assert [m.text for m in backend.calls[2][0]] == ["first", "w " * 100, "go"]
        await enter(pilot, "/edit")
        await pilot.pause()
        assert app.input.text == "go" and bubbles(app) == ["go"]


# ---- slash command parsing (no Textual) ----

@pytest.mark.parametrize("text, name, arg", [
    ("quit", "quit", None), ("Exit", "quit", None), ("clear", "new", None),
    ("/help", "help", None), ("/new", "new", None), ("/clear", "new", None), ("/temperature 0.5", "temperature", "0.5"),
    ("/topk", "top_k", None), ("/max_tokens 9", "max_tokens", "9"),
    ("/system Be  brief.\nReally.", "system", "Be  brief.\nReally."), ("/stats", "stats", None),
    ("/what", "unknown", None),
])
def test_parse_command(text, name, arg):
    command = sc.parse_command(text)
    assert command is not None and command.name == name and command.arg == arg


@pytest.mark.parametrize("text", ["hello", "quit now", "/usr/bin/env python?", "clear the table", "/ ",
                                  "//tmp is full"])
def test_messages_are_not_commands(text):
    assert sc.parse_command(text) is None


def test_a_double_slash_sends_a_message_that_starts_with_a_slash():
    parsed = sc.parse_input("//tmp is full")
    assert parsed.command is None and parsed.text == "/tmp is full" and parsed.escaped
    assert "or //tmp to send it as a message" in sc.unknown_command_message(sc.parse_command("/tmp"))


def test_the_registry_names_each_form_once_and_serves_the_page():
    forms = [f for spec in sc.COMMANDS for f in (*spec.slash, *spec.words)]
    assert len(forms) == len(set(forms))
    page = {c["name"]: c for c in sc.page_commands()}
    assert page["max_tokens"]["slash"][0] == "/max-tokens" and "system" in page and "stats" in page
    assert "quit" not in page and "key" in page
    assert "/max-tokens [value]" in sc.help_text() and "Ctrl+R" in sc.help_text()


def test_widgets_and_commands_modules_keep_textual_out_of_the_cli():
    code = ("import sys\nimport nanochat_tui.cli, nanochat_tui.commands\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ---- real models ----

async def test_real_fixture_checkpoint_end_to_end(load_fixture):
    """gen5 fixture loaded by the app's own worker; the reply on screen is the engine's reply."""
    sampling = SamplingParams(temperature=0.0, max_tokens=24)
    want = load_fixture("gen5-smear-backout").reply([{"role": "user", "content": "Hello model"}], sampling)
    from nanochat_core.text import sanitize_for_terminal

    config = ChatConfig(model=ModelSelection(base_dir=str(GEN5), device_type="cpu", explicit=True),
                        sampling=sampling)
    app = NanochatApp(config, animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.backend is not None, timeout=60, what="the fixture to load")
        await pilot.pause()
        assert app.backend.info.generation == "gen5-smear-backout"
        assert "d4 · sft step 700 · gen5-smear-backout" in screen_text(app)
        assert any("Loading weights" in n for n in notices(app))
        await send(pilot, "Hello model")
        assert replies(app)[0].text == sanitize_for_terminal(want)
        assert SUMMARY_RE.match(app.status.text)
        assert app.history[-1].role == "assistant"
        # a second turn and Esc on the real engine
        await send(pilot, "And again")
        assert len(replies(app)) == 2
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not app.generating)


async def test_real_demo_model_end_to_end(tmp_path, monkeypatch):
    from nanochat_core import load_chat_model
    from nanochat_core.text import sanitize_for_terminal

    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))  # nothing there: the demo model
    sampling = SamplingParams(temperature=0.0, max_tokens=32)
    want = load_chat_model(device="cpu").reply([{"role": "user", "content": "Hello!"}], sampling)
    config = ChatConfig(model=ModelSelection(device_type="cpu"), sampling=sampling)
    app = NanochatApp(config, animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.backend is not None or app.load_error is not None, timeout=60)
        assert app.load_error is None, app.load_error
        await pilot.pause()
        assert app.backend.info.is_demo and "demo model" in screen_text(app).splitlines()[0]
        await send(pilot, "Hello!")
        assert replies(app)[0].text == sanitize_for_terminal(want)
        assert SUMMARY_RE.match(app.status.text)
