"""Helpers shared by the Pilot tests of the full-screen app (tests/test_app*.py)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from fake_backend import FakeBackend

from nanochat_tui.app import NanochatApp
from nanochat_tui.config import ChatConfig, HistorySettings
from nanochat_tui.widgets import AssistantMessage, Notice, UserMessage

SIZE = (100, 32)


def make_app(backend=None, *, home: Path | None = None, history: HistorySettings | None = None,
             **config) -> NanochatApp:
    """An app on a fake engine, saving to its own SQLite file and settings file (in `home`, a
    fresh temporary folder by default), so tests never share prompt history or settings."""
    home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="nanochat-app-", dir=os.environ.get("NANOCHAT_TUI_TEST_ROOT")))
    if history is None:
        history = HistorySettings(path=str(home / "history.sqlite3"))
    return NanochatApp(ChatConfig(history=history, **config),
                       backend=backend if backend is not None else FakeBackend(),
                       settings_path=home / "config.toml", animate=False)


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for(pilot, predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def type_text(pilot, text: str) -> None:
    """Type like a user (key presses), newlines as Ctrl+J."""
    keys = ["ctrl+j" if ch == "\n" else ("space" if ch == " " else ch) for ch in text]
    await pilot.press(*keys)


async def enter(pilot, text: str) -> None:
    """Put `text` in the input and press Enter (typing itself is tested with real key presses
    in the newline tests and in tests/test_tui_tmux.py)."""
    pilot.app.input.clear()
    pilot.app.input.insert(text)
    await pilot.press("enter")


async def send(pilot, text: str, wait: bool = True) -> None:
    app = pilot.app
    app.input.clear()
    app.input.insert(text)
    await pilot.press("enter")
    if wait:
        await wait_for(pilot, lambda: not app.generating, what="the reply to finish")
        await pilot.pause()


def replies(app) -> list[AssistantMessage]:
    return list(app.query(AssistantMessage))


def bubbles(app) -> list[str]:
    return [b.text for b in app.query(UserMessage)]


def notices(app) -> list[str]:
    return [n.text for n in app.query(Notice)]
