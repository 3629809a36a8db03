"""The full-screen chat in a real terminal: the installed `nanochat-tui` inside tmux.

tmux is started with a config file holding `set -s extended-keys always` (setting it after the
server starts does nothing), so Shift+Enter and Ctrl+Shift+N reach the app as a kitty-protocol
terminal would send them (see docs/testing.md). Keys are sent the way tmux sends typing: in one
burst ("hello" then Enter), which Pilot cannot reproduce.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import FIXTURES, cli_command

if shutil.which("tmux") is None and os.environ.get("CI"):
    raise RuntimeError("CI must run the real-terminal tests, but tmux is not installed")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (CI installs it)")

GEN5 = FIXTURES / "gen5-smear-backout" / "base_dir"
NEW_NOTICE = re.compile(r"^ New conversation *$", re.M)  # the notice, not the header control
SUMMARY = re.compile(r"\d+ tokens? · \d+\.\d tok/s · first token \d+ ms")


FAKE_APP = Path(__file__).with_name("tmux_fake_app.py")


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"nct-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp_path
        self.conf = tmp_path / "tmux.conf"
        # extended keys: Shift+Enter and Ctrl+Shift+N reach the app; set-clipboard on: programs
        # may set the clipboard (OSC 52), which tmux keeps as a paste buffer (show-buffer)
        self.conf.write_text("set -s extended-keys always\nset -s set-clipboard on\n")
        self.session = "chat"

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                              capture_output=True, text=True, check=check, timeout=30)

    def start(self, args: list[str], env: dict[str, str] | None = None, *, program: list[str] | None = None,
              size: tuple[int, int] = (100, 30), redirect: str = "") -> None:
        cli = " ".join(shlex.quote(a) for a in (program or cli_command()) + args)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # COLUMNS/LINES (set under pytest) would override the pane's real size; the terminal's
        # settings before and after (a program must leave them as it found them); after the app:
        # its exit status, and time to read the screen
        before, after = shlex.quote(str(self.tmp / "stty.before")), shlex.quote(str(self.tmp / "stty.after"))
        command = (f"stty -g > {before}; env -u NANOCHAT_BASE_DIR -u COLUMNS -u LINES {exports} {cli}{redirect}; "
                   f"echo \"[exited $?]\"; stty -g > {after}; sleep 60")
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(size[0]), "-y", str(size[1]), command)

    def start_fake(self, env: dict[str, str] | None = None, size: tuple[int, int] = (100, 30), **options) -> None:
        """The app on a fake engine (tests/tmux_fake_app.py) with FakeBackend(**options)."""
        self.start([json.dumps(options)], env, program=[sys.executable, str(FAKE_APP)], size=size)

    def terminal_restored(self) -> bool:
        before, after = self.tmp / "stty.before", self.tmp / "stty.after"
        return before.exists() and after.exists() and before.read_text() == after.read_text()

    def paste(self, text: str) -> None:
        """Paste `text` as a terminal does (one burst, bracketed when the program asks)."""
        buffer = self.tmp / "paste.txt"
        buffer.write_text(text)
        self._tmux("load-buffer", "-b", "p", str(buffer))
        self._tmux("paste-buffer", "-p", "-b", "p", "-t", self.session)

    def clipboard(self) -> str:
        """What a program last copied (OSC 52): tmux's newest paste buffer."""
        return self._tmux("show-buffer", check=False).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session).stdout

    def wait(self, pattern: str | re.Pattern, timeout: float = 30.0) -> str:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if regex.search(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{regex.pattern!r} did not appear; the screen:\n{text}")
            time.sleep(0.15)

    def wait_gone(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if not re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not go away; the screen:\n{text}")
            time.sleep(0.15)

    def kill(self) -> None:
        self._tmux("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.kill()


def input_box(screen: str) -> list[str]:
    """The lines inside the input's border (between ▔ and ▁ rows)."""
    lines = screen.splitlines()
    top = max(i for i, line in enumerate(lines) if "▔▔▔▔" in line)
    bottom = max(i for i, line in enumerate(lines) if "▁▁▁▁" in line)
    return [line.strip(" ▊▎") for line in lines[top + 1:bottom]]


def start_fixture(tmux: Tmux) -> None:
    tmux.start(["--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0", "-m", "16"])
    tmux.wait(r"Ready: d4 · sft step 700 · gen5-smear-backout", timeout=60)
    # the header: title, model, device/dtype, the New Conversation control
    tmux.wait(re.compile(r"\A nanochat +d4 · sft step 700 · gen5-smear-backout +cpu · float32 +\+ New conversation"))


def test_send_see_reply_and_speed_then_newline_keys_and_new_conversation(tmux):
    start_fixture(tmux)
    screen = tmux.screen()
    assert "Ask anything" in screen and "^n New chat" in screen

    tmux.keys("hello", "Enter")
    screen = tmux.wait(SUMMARY)
    bubble = next(line for line in screen.splitlines() if line.strip() == "hello")
    assert bubble.index("hello") > 50  # right-aligned
    assert input_box(screen) == ["Ask anything"]  # sent: the input is empty again
    assert "16 tokens" in screen  # -m 16 on a random model: the reply ran to max tokens

    # Ctrl+J and Shift+Enter (extended keys) insert newlines; Enter sends all three lines
    tmux.keys("line one", "C-j", "line two", "S-Enter", "line three")
    screen = tmux.wait(r"line three")
    assert input_box(screen) == ["line one", "line two", "line three"]
    tmux.keys("Enter")
    # one right-aligned bubble of three lines, and an empty input
    screen = tmux.wait(re.compile(r"^ {50,}line one *\n {50,}line two *\n {50,}line three *$", re.M))
    tmux.wait_gone(r"▊ line one")

    # Ctrl+Shift+N as a kitty/extended-keys terminal sends it
    tmux.keys("C-S-n")
    screen = tmux.wait(NEW_NOTICE)
    assert "hello" not in screen and "line one" not in screen


def test_typed_clear_clears_and_typed_quit_exits(tmux):
    start_fixture(tmux)
    tmux.keys("hi there", "Enter")
    tmux.wait(SUMMARY)
    assert "hi there" in tmux.screen()
    tmux.keys("clear", "Enter")
    screen = tmux.wait(NEW_NOTICE)
    assert "hi there" not in screen and input_box(screen) == ["Ask anything"]
    tmux.keys("quit", "Enter")
    screen = tmux.wait(r"\[exited \d+\]", timeout=15)
    assert "Goodbye!" in screen and "[exited 0]" in screen
    assert "Ask anything" not in screen  # the full screen is gone


def test_load_error_is_shown_in_the_app_and_ctrl_q_quits(tmux, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tmux.start(["--model-dir", str(empty)])
    screen = tmux.wait(r"Could not load the model", timeout=60)
    assert "Traceback" not in screen and str(empty) in screen
    tmux.keys("C-q")
    screen = tmux.wait(r"\[exited \d+\]", timeout=15)
    assert "[exited 2]" in screen and "Goodbye!" not in screen
    # the screen is gone, the reason is not: printed once more as the one error line
    assert re.search(r"^nanochat-tui: error: could not load the model: ", screen, re.M)
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("nanochat-tui: error:"))
    assert str(empty) in "".join(lines[start:start + 3])  # (a long path wraps)


def test_demo_model_in_a_real_terminal(tmux, tmp_path):
    tmux.start(["-t", "0", "-m", "24"], env={"NANOCHAT_BASE_DIR": str(tmp_path)})
    screen = tmux.wait(r"Ready: demo model", timeout=60)
    assert "demo model" in screen.splitlines()[0]
    tmux.keys("Hello!", "Enter")
    tmux.wait(SUMMARY)
    tmux.keys("C-n")
    screen = tmux.wait(NEW_NOTICE)
    assert "Hello!" not in screen


# ---- issue 11: keys, copying, history, emoji (fake engine: known replies, slow on demand) ----

def test_ctrl_c_stops_a_reply_then_twice_quits_and_the_terminal_is_restored(tmux, tmp_path):
    tmux.start_fake(env={"NANOCHAT_TUI_HOME": str(tmp_path)}, reply="word " * 400, token_delay=0.05)
    tmux.wait(r"Ready: d4")
    tmux.keys("talk", "Enter")
    tmux.wait(r"word word word")
    tmux.keys("C-c")
    screen = tmux.wait(r"■ stopped")
    assert "[exited" not in screen
    tmux.keys("C-c")
    tmux.wait(r"Press Ctrl\+C again to quit")
    tmux.keys("C-c")
    screen = tmux.wait(r"\[exited \d+\]", timeout=15)
    assert "[exited 0]" in screen and "Ask anything" not in screen
    assert tmux.terminal_restored()
    # quitting lost nothing: the stopped reply is saved
    from nanochat_core.history import HistoryStore

    store = HistoryStore.open(tmp_path / "history.sqlite3")
    saved = store.load(store.latest_id())
    assert [n.state for n in saved.path()] == ["done", "stopped"] and saved.path()[1].text.startswith("word word")


def test_copy_a_reply_and_a_code_block_to_the_clipboard(tmux, tmp_path):
    reply = "Run this:\n\n```sh\necho copied-from-the-app\n```\n\nThen this."
    tmux.start_fake(env={"NANOCHAT_TUI_HOME": str(tmp_path)}, reply=reply)
    tmux.wait(r"Ready: d4")
    tmux.keys("how?", "Enter")
    tmux.wait(r"Then this\.")
    tmux.keys("/copy code", "Enter")
    tmux.wait(r"Copied code block 1 of 1")
    deadline = time.monotonic() + 10
    while tmux.clipboard() != "echo copied-from-the-app\n" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tmux.clipboard() == "echo copied-from-the-app\n"
    # select the reply with Shift+Tab, its keys in the footer; c copies all of it
    tmux.keys("BTab")
    screen = tmux.wait(r"c Copy")
    assert "e Edit" in screen and "d Delete" in screen
    tmux.keys("c")
    deadline = time.monotonic() + 10
    while tmux.clipboard() != reply and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tmux.clipboard() == reply


def test_palette_prompt_history_and_edit_in_a_real_terminal(tmux, tmp_path):
    tmux.start_fake(env={"NANOCHAT_TUI_HOME": str(tmp_path)})
    tmux.wait(r"Ready: d4")
    tmux.keys("first question", "Enter")
    tmux.wait(r"You said: first question")
    tmux.keys("second question", "Enter")
    tmux.wait(r"You said: second question")
    # Up in the empty input: earlier prompts, like a shell (an arrow key, not ^[[A)
    tmux.keys("Up")
    screen = tmux.wait(r"▊ second question")
    tmux.keys("Up")
    screen = tmux.wait(r"▊ first question")
    assert "^[[A" not in screen
    tmux.keys("Down", "Down")
    tmux.wait(r"▊ Ask anything")
    # Ctrl+P: the command palette, searched by typing
    tmux.keys("C-p")
    tmux.wait(r"Search for commands")
    tmux.keys("edit your")
    tmux.wait(r"Edit your last message")
    tmux.keys("Enter")
    screen = tmux.wait(r"Editing your message")
    assert input_box(screen) == ["second question"]
    tmux.keys("Escape")
    tmux.wait(r"▊ Ask anything")
    tmux.keys("C-q")
    tmux.wait(r"\[exited 0\]", timeout=15)


def test_conversations_are_saved_and_continued_with_c(tmux, tmp_path):
    env = {"NANOCHAT_TUI_HOME": str(tmp_path)}
    tmux.start(["--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0", "-m", "8"], env=env)
    tmux.wait(r"Ready: d4", timeout=60)
    tmux.keys("remember apricots", "Enter")
    tmux.wait(SUMMARY)
    tmux.keys("C-q")
    tmux.wait(r"\[exited 0\]", timeout=15)
    tmux.kill()
    tmux.socket = f"nct-{uuid.uuid4().hex[:8]}"
    tmux.start(["--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0", "-m", "8", "-c"], env=env)
    screen = tmux.wait(r"Continuing “remember apricots” \(2 messages\)", timeout=60)
    assert "remember apricots" in screen
    # Ctrl+O: the conversation list
    tmux.keys("C-o")
    screen = tmux.wait(r"r Rename")
    assert "Conversations" in screen and "● remember apricots" in screen
    tmux.keys("Escape")
    tmux.wait_gone(r"r Rename")
    # incognito is said in the header
    tmux.kill()
    tmux.socket = f"nct-{uuid.uuid4().hex[:8]}"
    tmux.start(["--model-dir", str(GEN5), "--device-type", "cpu", "--no-history"], env=env)
    screen = tmux.wait(r"Ready: d4", timeout=60)
    assert "incognito: not saved" in screen.splitlines()[0]


def test_emoji_sequences_leave_the_right_edge_intact(tmux, tmp_path):
    """tmux draws a skin-toned emoji 4 cells wide and heart + VS16 1 cell wide, where Textual
    counts 2: a row holding them would be laid out shifted and lose its right edge."""
    line = "Great 👍🏽 family 👨‍👩‍👧 heart ❤️ coder 👩🏽‍💻 end"
    tmux.start_fake(env={"NANOCHAT_TUI_HOME": str(tmp_path)}, reply="\n\n".join([line] * 12), size=(60, 20))
    tmux.wait(r"Ready: d4")
    tmux.keys("emoji please", "Enter")
    screen = tmux.wait(r"end")
    rows = [row for row in screen.splitlines() if "Great" in row]
    assert rows
    for row in rows:
        # what reached the terminal holds no sequence terminals measure differently
        assert not re.search("[\u200d\ufe0f\U0001f3fb-\U0001f3ff]", row), row
        assert "Great 👍 family 👨👩👧 heart ❤ coder 👩💻 end" in row
    # every row of the chat area, as tmux laid it out (colours kept, so trailing cells count),
    # is as wide as the others: the scrollbar column was not pushed off any row
    from rich.cells import cell_len

    styled = tmux._tmux("capture-pane", "-p", "-e", "-t", tmux.session).stdout.splitlines()
    widths = {cell_len(re.sub(r"\x1b\[[0-9;]*m", "", row)) for row in styled[1:14]}
    assert len(widths) == 1, widths


# ---- the line chat (--plain) in a real terminal ----

def _plain(tmux: Tmux, tmp_path: Path, redirect: str = "") -> None:
    tmux.start(["--plain", "--model-dir", str(GEN5), "--device-type", "cpu", "-t", "0", "-m", "4"],
               env={"NANOCHAT_TUI_HOME": str(tmp_path)}, redirect=redirect)
    tmux.wait(PROMPT, timeout=60)


PROMPT = re.compile(r"^User: *$", re.M)  # a prompt waiting for a line


def _wait_prompts(tmux: Tmux, count: int, timeout: float = 60) -> str:
    """The screen once a new "User:" prompt waits (the last line on screen), after `count` - 1
    lines were answered (counted from the history database: earlier prompts scroll away)."""
    deadline = time.monotonic() + timeout
    while True:
        saved = len(_saved_prompts(tmux.tmp))  # (read before the screen: the screen is newer)
        screen = tmux.screen()
        lines = [line for line in screen.splitlines() if line.strip()]
        if lines and lines[-1].rstrip() == "User:" and saved >= count - 1:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"prompt {count} did not appear; the screen:\n{screen}")
        time.sleep(0.15)


def _saved_prompts(tmp_path: Path) -> list[str]:
    from nanochat_core.history import HistoryStore

    store = HistoryStore.open(tmp_path / "history.sqlite3")
    try:
        return list(reversed(store.recent_prompts()))
    finally:
        store.close()


def test_plain_line_editing_history_and_long_pastes(tmux, tmp_path):
    _plain(tmux, tmp_path)
    # arrow keys edit the line (readline), they do not print ^[[D
    screen = tmux.screen()
    assert "Loading weights" not in screen  # the progress line was erased, not left in pieces
    tmux.keys("helo", "Left", "l", "Enter")
    screen = _wait_prompts(tmux, 2)
    assert "User: hello" in screen and "^[[" not in screen
    # Up recalls the previous line
    tmux.keys("Up")
    screen = tmux.wait(re.compile(r"^User: hello *\n(\s*\n)*\s*\Z", re.M))  # the last prompt shows it
    assert "^[[A" not in screen
    tmux.keys("C-u")
    # a paste longer than the terminal's 4,095-byte line limit arrives whole
    tmux.paste("x" * 8000)
    tmux.keys("Enter")
    deadline = time.monotonic() + 60
    while "x" * 8000 not in _saved_prompts(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _saved_prompts(tmp_path)[:2] == ["hello", "x" * 8000]
    _wait_prompts(tmux, 3)
    # one more character: the 8,000-character rule, in the user's words
    tmux.paste("y" * 8001)
    tmux.keys("Enter")
    want = "error: Message 2 is too long. Maximum 8000 characters allowed per message (your message, 8,001 characters)"
    deadline = time.monotonic() + 30
    while want not in "".join(tmux.screen().splitlines()):  # (the line wraps at 100 columns)
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.15)
    assert "y" * 8001 not in _saved_prompts(tmp_path)
    tmux.keys("quit", "Enter")
    tmux.wait(r"\[exited 0\]", timeout=15)
    assert tmux.terminal_restored()


def test_plain_with_stdout_to_a_file_still_shows_the_prompts(tmux, tmp_path):
    out = tmp_path / "out.txt"
    _plain(tmux, tmp_path, redirect=f" > {shlex.quote(str(out))}")  # waits for "User:" on screen
    tmux.keys("hi", "Enter")
    _wait_prompts(tmux, 2)
    tmux.keys("quit", "Enter")
    tmux.wait(r"\[exited 0\]", timeout=15)
    text = out.read_text()
    assert text.strip() and "User:" not in text and "Assistant:" not in text  # the reply alone
    assert "Goodbye!" in tmux.screen()


def test_versions_themes_settings_and_slashes_in_a_real_terminal(tmux, tmp_path):
    tmux.start_fake(env={"NANOCHAT_TUI_HOME": str(tmp_path)})
    tmux.wait(r"Ready: d4")
    tmux.keys("//tmp is full", "Enter")  # a message that starts with a slash
    tmux.wait(r"You said: /tmp is full")
    # Ctrl+R: a second version; Ctrl+Up selects it, Left shows the first again
    tmux.keys("C-r")
    tmux.wait(r"‹ 2/2 ›")
    tmux.keys("C-Up")
    tmux.wait(r"←→ Version")
    tmux.keys("Left")
    tmux.wait(r"‹ 1/2 ›")
    tmux.keys("Escape")
    tmux.wait_gone(r"←→ Version")  # back in the input (and no Esc+key read as Alt+key)
    # /theme: chosen and remembered in the settings file
    tmux.keys("/theme nord", "Enter")
    tmux.wait(r"theme set to nord")
    deadline = time.monotonic() + 10
    while 'theme = "nord"' not in _read(tmp_path / "config.toml") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 'theme = "nord"' in _read(tmp_path / "config.toml")
    # /settings opens the dialog; Esc leaves it
    tmux.keys("/settings", "Enter")
    tmux.wait(r"Save as defaults")
    tmux.keys("Escape")
    tmux.wait_gone(r"Save as defaults")
    time.sleep(0.3)  # (a key right after Esc would arrive as Alt+key)
    # F1: keys and commands
    tmux.keys("F1")
    tmux.wait(r"Sending a slash")
    tmux.keys("C-q")
    tmux.wait(r"\[exited 0\]", timeout=15)
    assert tmux.terminal_restored()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
