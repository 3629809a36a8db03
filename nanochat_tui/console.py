"""Lines for people on stdout / stderr (line modes, web console, bench, export): always sanitized.

Notices, progress, `Loaded …`, errors: each can carry a path, a server's words or a model id, so
each goes through nanochat_core.text.one_line on its way out (docs/security.md). Reply text is
streamed by terminal_chat.py with sanitize_for_terminal instead (it is multi-line).
"""

from __future__ import annotations

import sys
from typing import TextIO

from nanochat_core.text import one_line

PROG = "nanochat-tui"


def say(text: object, file: TextIO | None = None, *, end: str = "\n") -> None:
    """Write one sanitized line (and flush: progress must show while work goes on)."""
    stream = file if file is not None else sys.stdout
    stream.write(one_line(text) + end)
    stream.flush()


def note(text: object) -> None:
    """A line on stderr: notices and progress, so stdout keeps only the reply / the result."""
    say(text, sys.stderr)


def error_line(message: object) -> str:
    """`nanochat-tui: error: …` (argparse's shape), sanitized."""
    return f"{PROG}: error: {one_line(message)}"
