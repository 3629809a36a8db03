"""The message input: a TextArea that sends on Enter, grows with its content (up to 8 lines) and
walks earlier prompts with Up / Down like a shell."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from ..prompt_history import PromptHistory

MAX_VISIBLE_LINES = 8


# Keys handled in key order by `_on_key` (see there); the bindings below describe them (footer).
SUBMIT_KEYS = ("enter",)
NEWLINE_KEYS = ("ctrl+j", "newline", "shift+enter")


class PromptInput(TextArea):
    """Enter sends; Shift+Enter and Ctrl+J insert a newline; Up in an empty input (or on the
    first line of a recalled prompt) shows the previous prompt, Down the next.

    These keys are handled in `_on_key`, not by bindings: a priority binding runs when the App
    receives the key, before the TextArea has processed the keys typed just before it, so a fast
    typist or a terminal sending "hello<Enter>" in one burst (tmux send-keys, some pastes) would
    send an empty or partial message; non-priority bindings run after the key bubbles back up,
    so Ctrl+J would land after the letters typed after it. `_on_key` sees keys in order.
    """

    BINDINGS = [
        Binding("enter", "submit", "Send", show=False),
        Binding("ctrl+j", "newline", "New line", key_display="^j"),
        Binding("shift+enter", "newline", "New line", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("placeholder", "Ask anything")
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("highlight_cursor_line", False)
        kwargs.setdefault("tab_behavior", "focus")
        super().__init__(**kwargs)
        self.prompts = PromptHistory()

    def _recalled(self) -> bool:
        """The input shows a recalled prompt, unchanged (so Up / Down keep walking)."""
        return self.prompts.walking and self.text == self.prompts.current()

    async def _on_key(self, event: events.Key) -> None:
        if not self.read_only:
            key = event.key
            handled = True
            if key in SUBMIT_KEYS:
                self.action_submit()
            elif key in NEWLINE_KEYS:
                self.action_newline()
            elif key == "up" and (not self.text or (self._recalled() and self.cursor_location[0] == 0)):
                self.recall(-1)
            elif key == "down" and self._recalled() and self.cursor_location[0] == self.document.line_count - 1:
                self.recall(1)
            else:
                handled = False
            if handled:
                event.stop()
                event.prevent_default()
                return
        await super()._on_key(event)

    def recall(self, step: int) -> bool:
        """Show the previous (-1) or next (+1) prompt; False when there is none."""
        text = self.prompts.older(self.text) if step < 0 else self.prompts.newer()
        if text is None:
            return False
        self.set_text(text)
        return True

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self.text))

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    def set_text(self, text: str) -> None:
        """Replace the content and put the cursor at the end."""
        self.load_text(text)
        self.move_cursor(self.document.end)
