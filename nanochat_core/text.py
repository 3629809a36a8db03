"""Making model text safe to write to a terminal.

Model output can contain any byte, ESC included (the random fixture models emit `\\x1b`). Written
raw, that would let a model move the cursor, retitle the window or worse. We keep newlines and
tabs, and show every other control character as a visible placeholder instead of executing it.
"""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, and the C1 range (U+0080–U+009F, e.g. CSI U+009B).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0D:  # a lone carriage return would overwrite the line; treat it as a newline
        return "\n"
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation: ESC -> ^[
    return f"<U+{code:04X}>"


def sanitize_for_terminal(text: str) -> str:
    """Replace control characters (except newline and tab) with visible text."""
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(_visible, text)
