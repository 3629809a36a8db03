"""What to tell the user after copying (no Textual import).

The app copies with OSC 52 (Textual's `copy_to_clipboard`): an escape sequence asking the
terminal to set the clipboard. It works over SSH and needs nothing installed, but the terminal
decides: most modern ones accept it; macOS Terminal does not; tmux passes it on only with
`set -s set-clipboard on`; screen not at all. Nothing comes back to say whether it worked, so the
app says what it knows from the environment.
"""

from __future__ import annotations

import os
from typing import Mapping

# Terminals known to accept OSC 52 (by the variables they set).
_KNOWN_GOOD_PROGRAMS = {"iTerm.app", "WezTerm", "ghostty", "vscode", "Tabby", "rio"}
_KNOWN_GOOD_TERMS = ("kitty", "alacritty", "foot", "wezterm", "ghostty", "contour")


def clipboard_caveat(env: Mapping[str, str] | None = None) -> str:
    """"" when the terminal is known to accept OSC 52, else one short sentence on why the copy
    may not have reached the clipboard and what to do."""
    env = os.environ if env is None else env
    term = env.get("TERM", "")
    if env.get("TMUX"):
        return ("inside tmux the copy reaches your clipboard only with `set -s set-clipboard on` "
                "in ~/.tmux.conf")
    if term.startswith("screen"):
        return "GNU screen does not pass copies to your clipboard: select with the mouse instead"
    if env.get("TERM_PROGRAM") == "Apple_Terminal":
        return "macOS Terminal does not let programs set the clipboard: select with the mouse, or use iTerm2"
    if (env.get("TERM_PROGRAM") in _KNOWN_GOOD_PROGRAMS or env.get("KITTY_WINDOW_ID") or env.get("WT_SESSION")
            or env.get("ALACRITTY_WINDOW_ID") or any(name in term for name in _KNOWN_GOOD_TERMS)):
        return ""
    return ("if nothing was copied, this terminal does not accept OSC 52 copies: select with the mouse "
            "(README, 'Copying')")


def copied_message(what: str, text: str, env: Mapping[str, str] | None = None) -> str:
    """`Copied the reply (1,234 characters)`, plus the caveat when there is one."""
    size = f"{len(text):,} character{'s' if len(text) != 1 else ''}"
    caveat = clipboard_caveat(env)
    return f"Copied {what} ({size})" + (f"; {caveat}" if caveat else "")
