"""Snapshot tests of the full-screen chat (pytest-textual-snapshot; SVG baselines in
tests/__snapshots__/, refresh with `pytest tests/test_app_snapshots.py --snapshot-update`).

Deterministic: a fake engine with fixed replies and fixed GenerationStats (so the status line
is always the same), no cursor blinking, a fixed terminal size.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from fake_backend import FakeBackend

from nanochat_core.chat import SamplingParams
from nanochat_tui.app import NanochatApp
from nanochat_tui.config import ChatConfig, HistorySettings

SIZE = (100, 32)
CODE_REPLY = (
    "Sure! Here is a function that adds two numbers:\n\n"
    "```python\ndef add(a, b):\n    return a + b\n```\n\n"
    "Call it like this:\n\n"
    "1. `add(2, 3)` gives **5**\n"
    "2. `add(-1, 1)` gives **0**\n"
)


def app_with(reply=CODE_REPLY) -> NanochatApp:
    home = Path(tempfile.mkdtemp(prefix="nanochat-snap-", dir=os.environ.get("NANOCHAT_TUI_TEST_ROOT")))  # its own history and settings
    config = ChatConfig(sampling=SamplingParams(temperature=0.0, top_k=50, max_tokens=512, seed=42),
                        history=HistorySettings(path=str(home / "history.sqlite3")))
    return NanochatApp(config, backend=FakeBackend(reply=reply, fixed_stats=True), animate=False,
                       settings_path=home / "config.toml")


async def _settle(pilot) -> None:
    deadline = time.monotonic() + 10
    while pilot.app.generating and time.monotonic() < deadline:
        await pilot.pause(0.02)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def _type_and_send(pilot, text: str) -> None:
    pilot.app.input.insert(text)
    await pilot.press("enter")
    await _settle(pilot)


def test_empty_ready_screen(snap_compare):
    assert snap_compare(app_with(), terminal_size=SIZE, run_before=_settle)


def test_finished_exchange_with_code_block(snap_compare):
    async def run_before(pilot):
        await _type_and_send(pilot, "Write a Python function that adds two numbers")

    assert snap_compare(app_with(), terminal_size=SIZE, run_before=run_before)


def test_error_banner_keeps_the_text(snap_compare):
    async def run_before(pilot):
        pilot.app.input.insert("/temperature 5")
        await pilot.press("enter")
        await _settle(pilot)

    assert snap_compare(app_with(), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    async def run_before(pilot):
        await _type_and_send(pilot, "/help")

    assert snap_compare(app_with(), terminal_size=SIZE, run_before=run_before)


def test_versions_and_a_selected_message(snap_compare):
    """After Ctrl+R: the reply shows ‹ 2/2 ›; selected with Shift+Tab, the footer lists its keys."""
    replies = iter(["The first answer.", "A second answer, **regenerated**."])

    async def run_before(pilot):
        await _type_and_send(pilot, "Say something")
        await pilot.press("ctrl+r")
        await _settle(pilot)
        await pilot.press("shift+tab")
        await _settle(pilot)

    assert snap_compare(app_with(lambda msgs: next(replies)), terminal_size=SIZE, run_before=run_before)


def test_conversation_list(snap_compare, monkeypatch):
    import nanochat_tui.widgets.screens as screens

    monkeypatch.setattr(screens, "_when", lambda t: "2026-05-01 12:00")  # saved times vary

    async def run_before(pilot):
        await _type_and_send(pilot, "How do I load my own checkpoint?")
        await pilot.app.new_conversation()
        await _type_and_send(pilot, "What is 2+2?")
        await pilot.press("ctrl+o")
        await _settle(pilot)

    assert snap_compare(app_with("An answer."), terminal_size=SIZE, run_before=run_before)


def test_editing_a_message(snap_compare):
    async def run_before(pilot):
        await _type_and_send(pilot, "Write a haiku about tea")
        pilot.app.input.insert("/edit")
        await pilot.press("enter")
        await _settle(pilot)

    assert snap_compare(app_with("Steam curls from the cup"), terminal_size=SIZE, run_before=run_before)
