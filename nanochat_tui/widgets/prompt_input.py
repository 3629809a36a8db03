"""The message input: a TextArea that sends on Enter and grows with its content (up to 8 lines)."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

MAX_VISIBLE_LINES = 8


# Keys handled in key order by `_on_key` (see there); the bindings below describe them (footer).
SUBMIT_KEYS = ("enter",)
NEWLINE_KEYS = ("ctrl+j", "newline", "shift+enter")


class PromptInput(TextArea):
    """Enter sends; Shift+Enter and Ctrl+J insert a newline; Up in an empty input asks to edit
    the last message.

    These keys are handled in `_on_key`, not by bindings: a priority binding runs when the App
    receives the key, before the TextArea has processed the keys typed just before it, so a fast
    typist or a terminal sending "hello<Enter>" in one burst (tmux send-keys, some pastes) would
    send an empty or partial message; non-priority bindings run after the key bubbles back up,
    so Ctrl+J would land after the letters typed after it. `_on_key` sees keys in order.
    """

    BINDINGS = [
        Binding("enter", "submit", "Send"),
        Binding("ctrl+j", "newline", "New line", key_display="^j"),
        Binding("shift+enter", "newline", "New line", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EditLast(Message):
        """Up was pressed in an empty input."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("placeholder", "Ask anything")
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("highlight_cursor_line", False)
        super().__init__(**kwargs)

    async def _on_key(self, event: events.Key) -> None:
        if not self.read_only:
            key = event.key
            if key in SUBMIT_KEYS or key in NEWLINE_KEYS or (key == "up" and not self.text):
                event.stop()
                event.prevent_default()
                if key in SUBMIT_KEYS:
                    self.action_submit()
                elif key in NEWLINE_KEYS:
                    self.action_newline()
                else:
                    self.post_message(self.EditLast())
                return
        await super()._on_key(event)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self.text))

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and not self.text:
            self.post_message(self.EditLast())
            return
        super().action_cursor_up(select)

    def set_text(self, text: str) -> None:
        """Replace the content and put the cursor at the end."""
        self.load_text(text)
        self.move_cursor(self.document.end)
