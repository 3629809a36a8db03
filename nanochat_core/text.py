"""The ONE sanitizer: every string from outside that reaches a terminal or a log passes here.

"Outside" means anything this process did not write itself: model output, a server's model ids
and error bodies, file and directory names, a web client's messages, meta files. Written raw,
such a string can drive the terminal that shows it: move the cursor, erase the line, retitle
the window (OSC 0/2), write the clipboard (OSC 52), or reorder what the user reads with Unicode
bidirectional overrides (the "Trojan Source" trick). docs/security.md lists where it applies.

Two shapes, one rule (every control character becomes visible text, nothing is dropped):
- `sanitize_for_terminal(text)`: multi-line text (a reply, /help): newlines and tabs are kept.
- `one_line(text)`: a line of a status, an error or a log: newlines and tabs are shown as
  `\\n` / `\\t` too, so one message is always one line.

The result is idempotent (sanitizing twice changes nothing) and contains no lone surrogates
(they would make writing to a UTF-8 stream raise).
"""

from __future__ import annotations

import logging
import re

# C0 controls except \t and \n, DEL, the C1 range (U+0080-U+009F, e.g. CSI U+009B), the
# bidirectional embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069), and lone
# UTF-16 surrogates (U+D800-U+DFFF; only a broken decoder or JSON escape produces them).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_OR_SPACE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_ONE_LINE_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(code: int) -> str:
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation: ESC -> ^[, BEL -> ^G
    if code == 0x7F:
        return "^?"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # a lone surrogate cannot be written as UTF-8
    return f"<U+{code:04X}>"  # C1 controls and bidi controls: named, never applied


def _multi_line(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":  # a lone carriage return would overwrite the line: treat it as a newline
        return "\n"
    return _visible(ord(char))


def _single_line(match: re.Match[str]) -> str:
    char = match.group()
    return _ONE_LINE_ESCAPES.get(char) or _visible(ord(char))


def sanitize_for_terminal(text: str) -> str:
    """`text` with every control character (except newline and tab) shown as visible text."""
    text = str(text).replace("\r\n", "\n")
    return _UNSAFE.sub(_multi_line, text)


def one_line(text: object, limit: int | None = None) -> str:
    """`text` as one safe line: controls visible, newlines and tabs escaped as `\\n` / `\\t`.
    With `limit`, cut to at most that many characters (ending in `…`)."""
    line = _UNSAFE_OR_SPACE.sub(_single_line, str(text))
    if limit is not None and len(line) > limit:
        line = line[: max(0, limit - 1)] + "…"
    return line


def compact_line(text: object, limit: int | None = 300) -> str:
    """Outside prose (a server's error body) as one safe line: runs of whitespace collapse to
    one space (a multi-line error reads as a sentence), then `one_line`."""
    return one_line(" ".join(str(text).split()), limit)


class SafeLogFormatter(logging.Formatter):
    """A logging.Formatter whose every record is one sanitized line: a client's message, a
    request line or an exception's text can never drive the console the log is written to.
    A traceback (--debug) keeps its lines, each sanitized."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = one_line(record.getMessage()), None
        text = super().format(record)
        head, sep, tail = text.partition("\n")
        return head + sep + sanitize_for_terminal(tail) if sep else head
