"""Text whose width every terminal agrees on, for the chat log.

Textual lays out a line by Rich's measure of each grapheme; the terminal then draws it by its own.
For most text they agree. Emoji sequences are where terminals differ: tmux 3.3 draws a
skin-toned 👍🏽 four cells wide and ❤️ (heart + VS16) one cell wide, where Rich counts two
each; xterm and VTE draw a ZWJ family 👨‍👩‍👧 six cells wide, where Rich (and tmux) count two. A
line the terminal draws wider or narrower than Textual laid it out shifts everything after it:
the scrollbar and the right edge show artefacts. (Measured in tmux 3.3a with tests/test_tui_tmux.py.)

So the log shows such sequences as their parts, each of which every terminal measures alike:
joiners between emoji, skin-tone modifiers after an emoji, VS16 and tag characters are left out
(👨‍👩‍👧 -> 👨👩👧, 👍🏽 -> 👍, ❤️ -> ❤). Only what is drawn changes: the conversation, copies and
exports keep the text as written.
"""

from __future__ import annotations

import re

_EMOJI = "\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_UNSAFE = re.compile(
    f"\u200d(?=[{_EMOJI}])"  # a zero-width joiner before an emoji (ZWJ sequences)
    f"|(?<=[{_EMOJI}])[\U0001f3fb-\U0001f3ff]"  # a skin tone after an emoji
    "|\ufe0f"  # variation selector 16 (emoji presentation)
    "|[\U000e0020-\U000e007f]"  # tag characters (subdivision flags)
)


def cell_safe(text: str) -> str:
    """`text` as the log draws it (see the module docstring)."""
    if text.isascii():
        return text
    return _UNSAFE.sub("", text)
