"""Line modes (--plain, -p) details from issue 11, on a real pseudo-terminal: the calculator note
gets a space before it, the load progress line fits the terminal's width (so it can be erased),
and rulebook errors name flags and commands instead of the web API's fields."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios

import pytest
from fake_backend import FakeBackend

from nanochat_core.chat import SamplingParams
from nanochat_core.conversation import Conversation
from nanochat_core.events import TextDelta, ToolCall, ToolResult
from nanochat_tui.commands import terminal_words
from nanochat_tui.terminal_chat import LoadProgress, stream_reply


def _terminal(columns: int = 80):
    """A pseudo-terminal of `columns` columns: (what the program writes to, the reader's fd)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return os.fdopen(slave, "w", encoding="utf-8"), master


def _read(master: int) -> str:
    data = b""
    while select.select([master], [], [], 0.2)[0]:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def test_the_calculator_note_is_spaced_from_the_reply_on_a_terminal():
    out, master = _terminal()
    conversation = Conversation()
    conversation.add_user("what is 2+2?")
    script = [TextDelta("2+2 is"), ToolCall("2+2"), ToolResult("2+2", "4"), TextDelta("4."),
              TextDelta(" Then"), ToolCall("3*3"), ToolResult("3*3", "9"), TextDelta(" 9 too.")]
    recorder = stream_reply(FakeBackend(script=script), conversation, SamplingParams(), out=out, err=out)
    out.flush()
    shown = _read(master)
    assert shown == "2+2 is [calculator: 2+2 = 4] 4. Then [calculator: 3*3 = 9] 9 too."
    # only the screen got the spaces: the reply recorded is the model's text
    assert recorder.parts[0]["text"] == "2+2 is" and recorder.parts[3]["text"] == "4. Then"
    out.close()
    os.close(master)


def test_the_load_progress_line_fits_the_terminal_so_it_can_be_erased():
    err, master = _terminal(columns=40)
    progress = LoadProgress(err)
    progress("Loading weights /a/very/long/path/to/a/checkpoint/chatsft_checkpoints/d20/model_000700.pt")
    progress.close()
    shown = _read(master)
    drawn = [part for part in shown.split("\r") if part.strip()]
    assert drawn and all(len(part) < 40 for part in drawn), drawn
    assert drawn[0].startswith("Loading weights /") and "model_000700.pt" in drawn[0] and "…" in drawn[0]
    assert shown.endswith("\r")  # erased: blanks, then back to the start of the row
    err.close()
    os.close(master)


@pytest.mark.parametrize("words, flag, want", [
    ("top_k must be between 0 and 200", False, "top-k must be between 0 and 200"),
    ("max_tokens must be an integer, not 'x'", False, "max tokens must be an integer, not 'x'"),
    ("top_k must be between 0 and 200", True, "top-k must be between 0 and 200 (-k/--top-k)"),
    ("Temperature must be a number, not 'hot'", True, "Temperature must be a number, not 'hot' (-t/--temperature)"),
    ("Message 0 has empty content", True, "Message 0 has empty content"),
])
def test_terminal_words_name_flags_and_commands_not_api_fields(words, flag, want):
    assert terminal_words(words, flag=flag) == want
