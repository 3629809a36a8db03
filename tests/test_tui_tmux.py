"""The full-screen chat in a real terminal: the installed `nanochat-tui` inside tmux.

tmux is started with a config file holding `set -s extended-keys always` (setting it after the
server starts does nothing), so Shift+Enter and Ctrl+Shift+N reach the app as a kitty-protocol
terminal would send them (see docs/testing.md). Keys are sent the way tmux sends typing: in one
burst ("hello" then Enter), which Pilot cannot reproduce.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
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


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"nct-{uuid.uuid4().hex[:8]}"
        self.conf = tmp_path / "tmux.conf"
        self.conf.write_text("set -s extended-keys always\n")
        self.session = "chat"

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                              capture_output=True, text=True, check=check, timeout=30)

    def start(self, args: list[str], env: dict[str, str] | None = None) -> None:
        cli = " ".join(shlex.quote(a) for a in cli_command() + args)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # COLUMNS/LINES (set under pytest) would override the pane's real size; after the app:
        # its exit status, and time to read the screen
        command = (f"env -u NANOCHAT_BASE_DIR -u COLUMNS -u LINES {exports} {cli}; "
                   f"echo \"[exited $?]\"; sleep 60")
        self._tmux("new-session", "-d", "-s", self.session, "-x", "100", "-y", "30", command)

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


def test_demo_model_in_a_real_terminal(tmux, tmp_path):
    tmux.start(["-t", "0", "-m", "24"], env={"NANOCHAT_BASE_DIR": str(tmp_path)})
    screen = tmux.wait(r"Ready: demo model", timeout=60)
    assert "demo model" in screen.splitlines()[0]
    tmux.keys("Hello!", "Enter")
    tmux.wait(SUMMARY)
    tmux.keys("C-n")
    screen = tmux.wait(NEW_NOTICE)
    assert "Hello!" not in screen
